"""Learned correctors for ODE solvers.

``odeint`` with torchdiffeq's call shape, base solvers, NeurVec, AttNS (attnkit reconstruction),
benchmark systems, data, training and metrics.

Public API::

    from attnkit.ode import odeint, CorrectedSolver, NeurVec, create_system
    sys = create_system("elastic_pendulum")
    solver = CorrectedSolver("rk4_classic", NeurVec(4), dt=0.1)
    y = odeint(sys, y0, t, method=solver)          # (len(t), *y0.shape)

Method names: ``euler``, ``midpoint``, ``heun2``, ``rk4`` (torchdiffeq's 3/8 rule), ``rk4_classic``
(classical RK4, NeurVec's base), ``leapfrog``, ``exact``; adaptive ``dopri5``/``dopri8``/... via torchdiffeq.
"""

from __future__ import annotations

from ._odeint import ADAPTIVE_METHODS, odeint
from ._solvers import Solver, get_solver, list_solvers, register_solver
from .attns import AttNSRecon
from .corrected import CorrectedSolver, LinearCorrector, StepContext, ZeroCorrector, fit_linear_corrector
from .data import load_or_make, make_pairs, make_trajectories
from .metrics import blowup_rate, energy_drift, ensemble_statistics, relative_l2, trajectory_mse
from .neurvec import NeurVec, RationalActivation
from .systems import ODESystem, create_system, list_systems, register_system
from .train import TrainResult, build_corrector, load_checkpoint, rollout, train_corrector

__all__ = [
    "odeint",
    "ADAPTIVE_METHODS",
    "Solver",
    "register_solver",
    "get_solver",
    "list_solvers",
    "CorrectedSolver",
    "StepContext",
    "ZeroCorrector",
    "LinearCorrector",
    "fit_linear_corrector",
    "NeurVec",
    "RationalActivation",
    "AttNSRecon",
    "ODESystem",
    "create_system",
    "list_systems",
    "register_system",
    "make_trajectories",
    "make_pairs",
    "load_or_make",
    "trajectory_mse",
    "relative_l2",
    "energy_drift",
    "ensemble_statistics",
    "blowup_rate",
    "build_corrector",
    "train_corrector",
    "TrainResult",
    "rollout",
    "load_checkpoint",
]
