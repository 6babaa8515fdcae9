"""NeurVec: a neural vector added after each coarse step of a classical solver.

Reference:
    "On fast simulation of dynamical system with neural vector enhanced numerical solver", Huang, Liang,
    Zhang, Yang, Lin, Scientific Reports 13:15254 (2023), arXiv 2208.03680.
    Official code: github.com/dedekinds/NeurVec (``cases/elastic_pend``, ``cases/spring_chain``).
    Rational activation: Boulle, Nakatsukasa, Townsend, "Rational neural networks" (2020), arXiv 2004.01902.

Deviations:
    ``normalize="standardize"`` (the default) standardises the input state per component and scales the
    output by the per-component std of the training residuals. The official code feeds raw states and
    regresses raw residuals (``normalize="none"``, with ``loss_scale=1e6`` on the pendulum). The affine
    maps fold into the two Linear layers (:meth:`NeurVec.fold_normalization`), so the function class and
    parameter count are exactly the official ones; on the elastic pendulum the standardised form trains
    orders of magnitude better for the same budget (measured: docs/ode.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .corrected import StepContext

__all__ = ["RationalActivation", "NeurVec"]

_RELU_P3Q2 = ((0.0218, 0.5000, 1.5957, 1.1915), (1.0000, 0.0000, 2.3830))


class RationalActivation(nn.Module):
    """Elementwise ``R(x) = (a3 x^3 + a2 x^2 + a1 x + a0) / (b2 x^2 + b1 x + b0)``, 7 shared scalars.

    Args:
        init: ``"relu_p3q2"``, the type-(3,2) rational approximation of ReLU used by NeurVec:
            ``(a0..a3) = (0.0218, 0.5, 1.5957, 1.1915)``, ``(b0..b2) = (1.0, 0.0, 2.383)``.

    Shape:
        any ``(*)`` -> same shape.
    """

    def __init__(self, init: str = "relu_p3q2", device=None, dtype=None) -> None:
        super().__init__()
        if init != "relu_p3q2":
            raise ValueError(f"unknown rational init {init!r}; available: 'relu_p3q2'")
        kw = {"device": device, "dtype": dtype}
        self.numerator = nn.Parameter(torch.tensor(_RELU_P3Q2[0], **kw))  # (a0, a1, a2, a3)
        self.denominator = nn.Parameter(torch.tensor(_RELU_P3Q2[1], **kw))  # (b0, b1, b2)

    def forward(self, x: Tensor) -> Tensor:
        """Elementwise rational ``(a3 x^3 + a2 x^2 + a1 x + a0) / (b2 x^2 + b1 x + b0)``, shape of ``x``."""
        a0, a1, a2, a3 = self.numerator.unbind(0)
        b0, b1, b2 = self.denominator.unbind(0)
        num = ((a3 * x + a2) * x + a1) * x + a0  # Horner
        den = (b2 * x + b1) * x + b0
        return num / den

    def has_real_pole(self) -> bool:
        """True if the denominator ``b2 x^2 + b1 x + b0`` has a real root (outputs can become inf/NaN)."""
        b0, b1, b2 = (float(v) for v in self.denominator.detach())
        if b2 == 0.0:
            return b1 != 0.0
        return b1 * b1 - 4.0 * b0 * b2 >= 0.0

    def extra_repr(self) -> str:
        """Numerator and denominator coefficients shown in the module's ``repr``."""
        a = ", ".join(f"{v:.4f}" for v in self.numerator.detach().tolist())
        b = ", ".join(f"{v:.4f}" for v in self.denominator.detach().tolist())
        return f"a=({a}), b=({b})"


class NeurVec(nn.Module):
    """NeurVec corrector ``N(u)``: ``Linear(d, hidden) -> R -> Linear(hidden, d)`` on the state.

    Used as ``CorrectedSolver("rk4_classic", NeurVec(d), dt=h)``: ``u_{n+1} = Psi_h(u_n) + N(u_n)``.

    Args:
        dim: state dimension d.
        hidden: hidden width (official: 1024).
        activation: ``"rational"`` (official) or ``"relu"``/``"tanh"``.
        normalize: ``"standardize"`` (default; see module Deviations), ``"none"`` (official form), or
            ``"dt_power"`` (inputs standardised, output scaled by ``h**(p+1)`` set in :meth:`fit_normalizer`).
        zero_init_last: zero the last Linear layer (the corrected solver then equals its base exactly).

    Shape:
        ``forward(ctx)`` uses ``ctx.y`` ``(*batch, d)`` (a raw tensor is accepted too) -> ``(*batch, d)``.

    Parameters:
        ``d*hidden + hidden + hidden*d + d + 7``: 9,227 for d = 4 and 82,991 for d = 40 at hidden 1024.

    Raises:
        ValueError: unknown ``activation`` or ``normalize``.
    """

    insert = "additive"

    def __init__(
        self,
        dim: int,
        hidden: int = 1024,
        activation: str = "rational",
        normalize: str = "standardize",
        zero_init_last: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if normalize not in ("standardize", "none", "dt_power"):
            raise ValueError(f"normalize must be 'standardize', 'none' or 'dt_power', got {normalize!r}")
        acts = {
            "rational": lambda: RationalActivation(device=device, dtype=dtype),
            "relu": nn.ReLU,
            "tanh": nn.Tanh,
        }
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}; available: {sorted(acts)}")
        kw = {"device": device, "dtype": dtype}
        self.dim, self.hidden, self.normalize, self.activation = dim, hidden, normalize, activation
        self.fc1 = nn.Linear(dim, hidden, **kw)
        self.act = acts[activation]()
        self.fc2 = nn.Linear(hidden, dim, **kw)
        if zero_init_last:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
        fdt = dtype or torch.get_default_dtype()
        self.register_buffer("in_mean", torch.zeros(dim, device=device, dtype=fdt))
        self.register_buffer("in_std", torch.ones(dim, device=device, dtype=fdt))
        self.register_buffer("out_std", torch.ones(dim, device=device, dtype=fdt))

    @torch.no_grad()
    def fit_normalizer(
        self, u: Tensor, r: Tensor, increment: Tensor | None = None, dt_power: float | None = None
    ) -> NeurVec:
        """Fit the normalisation buffers (float64 statistics) on training pairs; a no-op for ``"none"``.

        Args:
            u: training states ``(M, d)``.
            r: one-step residual targets ``(M, d)``.
            increment: unused (interface shared with ``AttNSRecon``).
            dt_power: ``h**(p+1)``; required for ``normalize="dt_power"``.
        """
        if self.normalize == "none":
            return self
        u64 = u.reshape(-1, self.dim).double()
        self.in_mean.copy_(u64.mean(0))
        self.in_std.copy_(u64.std(0).clamp_min(1e-12))
        if self.normalize == "standardize":
            self.out_std.copy_(r.reshape(-1, self.dim).double().std(0).clamp_min(1e-300))
        else:
            if dt_power is None:
                raise ValueError("normalize='dt_power' needs dt_power = h**(order+1)")
            self.out_std.fill_(float(dt_power))
        return self

    def forward(self, ctx: StepContext | Tensor) -> Tensor:
        """Residual correction ``N(u)`` in raw units, ``(*batch, d)``; ``ctx`` is a step context or the state."""
        u = ctx.y if isinstance(ctx, StepContext) else ctx
        x = (u - self.in_mean) / self.in_std  # (*batch, d), standardised
        return self.fc2(self.act(self.fc1(x))) * self.out_std  # (*batch, d), raw residual units

    @torch.no_grad()
    def fold_normalization(self) -> NeurVec:
        """Return an official-form (``normalize="none"``) copy with the affine maps folded into the weights.

        Outputs agree to round-off; parameter count is unchanged.
        """
        p = self.fc1.weight
        new = NeurVec(
            self.dim, self.hidden, self.activation, normalize="none", device=p.device, dtype=p.dtype
        )
        new.act.load_state_dict(self.act.state_dict())
        inv = 1.0 / self.in_std.double()
        w1 = self.fc1.weight.double() * inv  # (H, d)
        b1 = self.fc1.bias.double() - w1 @ self.in_mean.double()
        new.fc1.weight.copy_(w1)
        new.fc1.bias.copy_(b1)
        s = self.out_std.double()
        new.fc2.weight.copy_(self.fc2.weight.double() * s[:, None])
        new.fc2.bias.copy_(self.fc2.bias.double() * s)
        return new

    def extra_repr(self) -> str:
        """Dimension, width and normalisation mode shown in the module's ``repr``."""
        return f"dim={self.dim}, hidden={self.hidden}, normalize={self.normalize}"
