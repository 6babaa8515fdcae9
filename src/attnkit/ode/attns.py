"""AttNS (attnkit reconstruction): a bounded, attention-style corrector for coarse ODE steps.

The paper's design is NOT public: "AttNS: Attention-Inspired Numerical Solving For Limited Data
Scenarios" (Huang, Liang, Zhong, Lin, ICML 2024; v1 "On Robust Numerical Solver for ODE via
Self-Attention Mechanism", AttSolver), arXiv 2302.10184, has no released code and its architecture,
inputs, bound and loss are unknown. This module is attnkit's own reconstruction from the papers'
abstracts and figure captions: an SE-style gate transplanted into the
solver, in the additive form the paper favours ("⊕") and the multiplicative ablation ("⊙").

Every table and plot labels it "AttNS (attnkit reconstruction)".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .corrected import StepContext
from .neurvec import RationalActivation

__all__ = ["AttNSRecon"]

LABEL = "AttNS (attnkit reconstruction)"


class AttNSRecon(nn.Module):
    """AttNS (attnkit reconstruction): bounded corrector ``sigma_r * s * tanh(g / s)``.

    ``g = Linear(d_in, hidden) -> R -> Linear(hidden, d)`` on a standardised input ``z``::

        additive (AttNS):         u_{n+1} = Psi_h(u) + sigma_r * (s * tanh(g / s))
        multiplicative (AttNS-m): u_{n+1} = u + S * (1 + s * tanh(g / s))

    with ``s = softplus(rho) + 1e-6`` a learnable per-component bound (init 3.0 additive, 0.5
    multiplicative) and ``S = Psi_h(u) - u`` the base increment.

    Args:
        dim: state dimension d.
        hidden: width of the MLP (NeurVec's backbone).
        inputs: ``"increment"`` (S, default), ``"state"`` (u) or ``"state+increment"`` (concat, 2d).
        mode: ``"additive"`` or ``"multiplicative"``; exposed as ``insert`` for ``CorrectedSolver``.
        bound: ``"tanh"`` or ``"none"`` (unbounded ablation).
        s_init: initial bound (default 3.0 additive, 0.5 multiplicative).
        spectral_norm: wrap both Linear layers in spectral normalisation.
        zero_init_last: zero the last Linear layer (reproduces the base solver exactly).

    Shape:
        ``forward(ctx)`` -> ``(*batch, d)``: the additive correction (raw units) or the multiplicative
        factor ``c`` (dimensionless).

    Raises:
        ValueError: unknown ``inputs``, ``mode`` or ``bound``.

    Deviations:
        Everything: the published method is unknown. Inputs and targets are standardised as NeurVec's
        attnkit default.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 1024,
        inputs: str = "increment",
        mode: str = "additive",
        bound: str = "tanh",
        s_init: float | None = None,
        spectral_norm: bool = False,
        zero_init_last: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if inputs not in ("increment", "state", "state+increment"):
            raise ValueError(f"inputs must be 'increment', 'state' or 'state+increment', got {inputs!r}")
        if mode not in ("additive", "multiplicative"):
            raise ValueError(f"mode must be 'additive' or 'multiplicative', got {mode!r}")
        if bound not in ("tanh", "none"):
            raise ValueError(f"bound must be 'tanh' or 'none', got {bound!r}")
        kw = {"device": device, "dtype": dtype}
        self.dim, self.hidden, self.inputs, self.mode, self.bound = dim, hidden, inputs, mode, bound
        self.insert = mode
        d_in = 2 * dim if inputs == "state+increment" else dim
        self.d_in = d_in
        self.fc1 = nn.Linear(d_in, hidden, **kw)
        self.act = RationalActivation(device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, dim, **kw)
        if zero_init_last:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
        if spectral_norm:
            self.fc1 = nn.utils.parametrizations.spectral_norm(self.fc1)
            self.fc2 = nn.utils.parametrizations.spectral_norm(self.fc2)
        s0 = s_init if s_init is not None else (3.0 if mode == "additive" else 0.5)
        rho0 = math.log(math.expm1(s0 - 1e-6))
        self.rho = nn.Parameter(torch.full((dim,), rho0, **kw))
        fdt = dtype or torch.get_default_dtype()
        self.register_buffer("in_mean", torch.zeros(d_in, device=device, dtype=fdt))
        self.register_buffer("in_std", torch.ones(d_in, device=device, dtype=fdt))
        self.register_buffer("out_std", torch.ones(dim, device=device, dtype=fdt))

    def _z(self, ctx: StepContext) -> Tensor:
        if self.inputs == "increment":
            return ctx.increment
        if self.inputs == "state":
            return ctx.y
        return torch.cat([ctx.y, ctx.increment], -1)  # (*batch, 2d)

    @torch.no_grad()
    def fit_normalizer(
        self, u: Tensor, r: Tensor, increment: Tensor | None = None, dt_power: float | None = None
    ) -> AttNSRecon:
        """Fit input (float64 mean/std of ``z``) and target (std of ``r``) statistics.

        Args:
            u: states ``(M, d)``.
            r: one-step residual targets ``(M, d)``; their std is the output scale (additive mode only).
            increment: base increments ``Psi_h(u) - u``, ``(M, d)``; required unless ``inputs="state"``.
            dt_power: ignored; accepted for call compatibility with :meth:`NeurVec.fit_normalizer`.

        Returns:
            ``self``, with the normaliser buffers set.
        """
        if self.inputs != "state" and increment is None:
            raise ValueError(f"inputs={self.inputs!r} needs the base increments to fit the normaliser")
        z = {
            "increment": lambda: increment,
            "state": lambda: u,
            "state+increment": lambda: torch.cat([u, increment], -1),
        }[self.inputs]()
        z = z.reshape(-1, self.d_in).double()
        self.in_mean.copy_(z.mean(0))
        self.in_std.copy_(z.std(0).clamp_min(1e-300))
        if self.mode == "additive":
            self.out_std.copy_(r.reshape(-1, self.dim).double().std(0).clamp_min(1e-300))
        return self

    @property
    def s(self) -> Tensor:
        """Per-component bound ``softplus(rho) + 1e-6``, shape ``(d,)``."""
        return F.softplus(self.rho) + 1e-6

    def forward(self, ctx: StepContext) -> Tensor:
        """Correction from the step context: additive residual (raw units) or factor ``c``, ``(*batch, d)``."""
        z = (self._z(ctx) - self.in_mean) / self.in_std  # (*batch, d_in), standardised
        g = self.fc2(self.act(self.fc1(z)))  # (*batch, d)
        if self.bound == "tanh":
            s = self.s
            g = s * torch.tanh(g / s)  # |g_i| <= s_i
        if self.mode == "additive":
            return g * self.out_std  # raw residual units
        return g  # multiplicative factor c

    def extra_repr(self) -> str:
        """Label and configuration shown in the module's ``repr``."""
        return (
            f"{LABEL}: dim={self.dim}, hidden={self.hidden}, inputs={self.inputs}, mode={self.mode}, "
            f"bound={self.bound}"
        )
