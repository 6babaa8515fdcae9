"""``odeint`` with torchdiffeq's call shape over attnkit's fixed-step solvers.

Reference:
    torchdiffeq (Chen et al.), github.com/rtqichen/torchdiffeq: ``odeint(func, y0, t, method, options)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._solvers import Func, Solver, get_solver, list_solvers

__all__ = ["odeint", "ADAPTIVE_METHODS"]

#: Adaptive methods delegated to torchdiffeq.
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5")
_REL_TOL = 1e-9


def _n_steps(span: float, h: float, tol: float = _REL_TOL) -> int:
    n = round(abs(span) / h)
    if n < 1 or abs(abs(span) - n * h) > tol * max(abs(span), h):
        raise ValueError(
            f"interval {span!r} of t is not an integer multiple of step_size {h!r} (relative tolerance "
            f"{tol:g}); attnkit does not interpolate, choose t on the step grid"
        )
    return n


def odeint(
    func: Func,
    y0: Tensor,
    t: Tensor,
    *,
    method: str | Solver = "rk4",
    options: dict[str, Any] | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> Tensor:
    """Integrate ``dy/dt = func(t, y)`` and return the solution at the times ``t``.

    Args:
        func: right-hand side ``func(t, y) -> dy/dt`` (a callable or an ``ODESystem``).
        y0: initial state ``(*batch, d)``.
        t: 1-D tensor of output times, strictly monotone (increasing or decreasing), ``(T,)``.
        method: a registered fixed-step name (``list_solvers()``: ``euler``, ``midpoint``, ``heun2``,
            ``rk4`` = torchdiffeq's 3/8 rule, ``rk4_classic``, ``leapfrog``, ``exact``), a ``Solver``
            instance (e.g. a ``CorrectedSolver``), or an adaptive torchdiffeq name (``dopri5``, ``dopri8``,
            ...), which is delegated to torchdiffeq with ``rtol``/``atol``.
        options: fixed-step: ``{"step_size": h}`` (time units). Each interval of ``t`` must be an integer
            multiple of ``h``. Without it, a ``CorrectedSolver`` uses its trained ``dt`` and a base
            solver takes one step per interval.
        rtol: relative tolerance of adaptive methods only.
        atol: absolute tolerance of adaptive methods only.

    Shape:
        returns ``(len(t), *y0.shape)``; row 0 is ``y0`` exactly.

    Raises:
        ValueError: unknown method (the message lists the names), bad ``t``, an interval that is not a
            multiple of ``step_size``, or unknown options.
        ImportError: an adaptive method without torchdiffeq installed (``pip install attnkit[ode]``).

    Deviations:
        torchdiffeq interpolates when ``t`` is off the step grid; attnkit raises instead.
    """
    if not isinstance(y0, Tensor):
        raise ValueError(f"y0 must be a Tensor, got {type(y0).__name__} (tuple states are not supported)")
    t = torch.as_tensor(t)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"t must be a non-empty 1-D tensor, got shape {tuple(t.shape)}")
    options = dict(options or {})
    if isinstance(method, str) and method in ADAPTIVE_METHODS:
        try:
            import torchdiffeq
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"method {method!r} needs torchdiffeq: pip install 'attnkit[ode]'") from e
        return torchdiffeq.odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options or None)
    if isinstance(method, str) and method not in list_solvers():
        raise ValueError(
            f"unknown method {method!r}; fixed-step: {list_solvers()}, adaptive (torchdiffeq): "
            f"{list(ADAPTIVE_METHODS)}"
        )
    solver = get_solver(method)
    h = options.pop("step_size", None)
    if options:
        raise ValueError(f"unknown options for fixed-step method: {sorted(options)} (only 'step_size')")
    if h is None:
        h = getattr(solver, "default_dt", None)
    if h is not None:
        h = float(h)
        if not (h > 0 and math.isfinite(h)):
            raise ValueError(f"step_size must be a positive finite number, got {h}")
    tl = t.tolist()
    if len(tl) > 1:
        d = [b - a for a, b in zip(tl[:-1], tl[1:])]
        if not (all(x > 0 for x in d) or all(x < 0 for x in d)):
            raise ValueError("t must be strictly increasing or strictly decreasing")
    # relative tolerance of the step grid: 1e-9, or a few ulps of t's dtype if coarser (float32 t)
    tol = max(_REL_TOL, 16 * torch.finfo(t.dtype).eps) if t.is_floating_point() else _REL_TOL
    out = [y0]
    y = y0
    tt = t.to(y0.dtype) if t.is_floating_point() else t.to(torch.get_default_dtype())
    for i in range(len(tl) - 1):
        span = tl[i + 1] - tl[i]
        if h is None:
            n, dt = 1, span
        else:
            n = _n_steps(span, h, tol)
            dt = math.copysign(h, span)
        t0 = tt[i]
        for k in range(n):
            y = solver.step(func, t0 + k * dt, y, dt)
        out.append(y)
    return torch.stack(out, 0)
