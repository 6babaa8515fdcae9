"""Corrected solvers: a base fixed-step solver plus a learned corrector, and simple correctors.

Update rules (NeurVec, arXiv 2208.03680; AttNS reconstruction, arXiv 2302.10184)::

    y_base = Psi_dt(y)                               # base step; f0 = func(t, y) computed once
    additive:       y_next = y_base + s(dt) * C(ctx)
    multiplicative: y_next = y_base + (y_base - y) * C(ctx)      # = y + S * (1 + C)

Both start from ``y_base``, so a zero correction returns the base step bitwise.

Reference:
    NeurVec official code, github.com/dedekinds/NeurVec (correction added after the full RK step).
    Hypersolvers (Poli et al., arXiv 2007.09601) for ``scale="dt_power"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._solvers import Func, Solver, get_solver

__all__ = ["StepContext", "CorrectedSolver", "ZeroCorrector", "LinearCorrector", "fit_linear_corrector"]


@dataclass
class StepContext:
    """What a corrector may look at during one step (all already computed: no extra NFE).

    Attributes:
        t: current time.
        y: current state ``(*batch, d)``.
        dt: step size (time units).
        f0: ``func(t, y)``, ``(*batch, d)``.
        increment: base increment ``S = Psi_dt(y) - y``, ``(*batch, d)``.
    """

    t: Tensor | float
    y: Tensor
    dt: float
    f0: Tensor
    increment: Tensor


class CorrectedSolver(Solver):
    """A base solver plus a learned corrector, usable as ``odeint(..., method=CorrectedSolver(...))``.

    Args:
        base: base solver name or instance (``rk4_classic`` is NeurVec's base).
        corrector: module called as ``corrector(ctx: StepContext) -> (*batch, d)``.
        dt: the step size the corrector was trained for (time units).
        insert: ``"additive"`` or ``"multiplicative"``; ``None`` takes ``corrector.insert`` if present,
            else additive.
        scale: ``"none"`` or ``"dt_power"`` (correction multiplied by ``dt**(order+1)``, hypersolver style).
        allow_dt_change: with ``scale="dt_power"`` only, permits steps at other sizes.

    Shape:
        y: a single tensor ``(*batch, d)``.

    Raises:
        ValueError: a conflicting ``insert``, an unknown ``scale``; at step time a ``dt`` other than the
            trained one (relative 1e-9), a base other than ``base_name``, or a tuple state.

    Deviations:
        The NeurVec code also allowed sub-stepping the corrector inside a coarse step; not implemented.
    """

    def __init__(
        self,
        base: str | Solver,
        corrector: nn.Module,
        *,
        dt: float,
        insert: str | None = None,
        scale: str = "none",
        allow_dt_change: bool = False,
    ) -> None:
        super().__init__()
        self.base = get_solver(base)
        self.corrector = corrector
        c_insert = getattr(corrector, "insert", None)
        if insert is None:
            insert = c_insert or "additive"
        elif c_insert is not None and c_insert != insert:
            raise ValueError(f"insert={insert!r} conflicts with the corrector's insert={c_insert!r}")
        if insert not in ("additive", "multiplicative"):
            raise ValueError(f"insert must be 'additive' or 'multiplicative', got {insert!r}")
        if scale not in ("none", "dt_power"):
            raise ValueError(f"scale must be 'none' or 'dt_power', got {scale!r}")
        if allow_dt_change and scale != "dt_power":
            raise ValueError("allow_dt_change=True needs scale='dt_power'")
        self.insert, self.scale, self.allow_dt_change = insert, scale, allow_dt_change
        self.base_name = self.base.name
        self.order = self.base.order
        self.nfe = self.base.nfe
        self.register_buffer("trained_dt", torch.tensor(float(dt), dtype=torch.float64))

    @property
    def default_dt(self) -> float:
        """The trained step size ``dt`` (time units), used by ``odeint`` when no ``step_size`` is given."""
        return float(self.trained_dt)

    def check(self, dt: float, base: Solver | None = None) -> None:
        """Raise ``ValueError`` if ``dt`` (or ``base``) does not match what the corrector was trained for."""
        td = float(self.trained_dt)
        if float(dt) < 0:
            raise ValueError(
                "a corrector is trained for forward steps; reverse-time integration is not supported"
            )
        if not self.allow_dt_change and abs(abs(float(dt)) - td) > 1e-9 * td:
            raise ValueError(f"corrector was trained for dt={td}, called with dt={float(dt)}")
        if base is not None and base.name != self.base_name:
            raise ValueError(f"corrector was trained with base {self.base_name!r}, not {base.name!r}")

    def step(self, func: Func, t, y: Tensor, dt: float, f0: Tensor | None = None) -> Tensor:
        """One corrected step: the base step ``Psi_dt(y)`` plus the correction, shape ``(*batch, d)``.

        Args:
            func: right-hand side ``func(t, y) -> dy/dt``.
            t: current time.
            y: current state ``(*batch, d)`` (a single tensor).
            dt: step size; must match the trained ``dt`` unless ``allow_dt_change``.
            f0: ``func(t, y)`` if already computed (reused, no extra NFE).

        Raises:
            ValueError: a tuple state, a negative or untrained ``dt``, or a mismatched base solver.
        """
        if not isinstance(y, Tensor):
            raise ValueError("CorrectedSolver needs a single-tensor state (*batch, d), not a tuple")
        if not torch.compiler.is_compiling():  # checked once before tracing (``fast_rollout``) instead
            self.check(dt, self.base)
        if f0 is None:
            f0 = func(t, y)
        y_base = self.base.step(func, t, y, dt, f0=f0)
        inc = y_base - y
        ctx = StepContext(t=t, y=y, dt=float(dt), f0=f0, increment=inc)
        c = _call_corrector(self.corrector, ctx, y.dtype)
        if self.insert == "multiplicative":
            return y_base + inc * c
        if self.scale == "dt_power":
            c = c * (abs(float(dt)) ** (self.order + 1))
        return y_base + c

    def extra_repr(self) -> str:
        """Base solver, trained ``dt``, insertion and scaling shown in the module's ``repr``."""
        return f"base={self.base_name}, dt={float(self.trained_dt)}, insert={self.insert}, scale={self.scale}"


def _param_dtype(m: nn.Module) -> torch.dtype | None:
    for p in m.parameters():
        return p.dtype
    for b in m.buffers():
        if b.is_floating_point():
            return b.dtype
    return None


def _call_corrector(corrector: nn.Module, ctx: StepContext, out_dtype: torch.dtype) -> Tensor:
    """Run the corrector in its own parameter dtype and cast its output back to the state's dtype."""
    pd = _param_dtype(corrector)
    if pd is not None and pd != ctx.y.dtype:
        ctx = StepContext(ctx.t, ctx.y.to(pd), ctx.dt, ctx.f0.to(pd), ctx.increment.to(pd))
    return corrector(ctx).to(out_dtype)


class ZeroCorrector(nn.Module):
    """Returns exact zeros of the state's shape: a test utility and a reference point (no parameters)."""

    def forward(self, ctx: StepContext) -> Tensor:
        """Zero correction ``zeros_like(ctx.y)``, shape ``(*batch, d)``."""
        return torch.zeros_like(ctx.y)


class LinearCorrector(nn.Module):
    """Affine corrector ``C(u) = u W^T + b`` on the state (a sanity baseline; exact on linear systems).

    Args:
        dim: state dimension d.
        bias: learn an offset.

    Shape:
        ``(*batch, d) -> (*batch, d)``.
    """

    def __init__(self, dim: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim, bias=bias, device=device, dtype=dtype)
        nn.init.zeros_(self.linear.weight)
        if bias:
            nn.init.zeros_(self.linear.bias)

    def forward(self, ctx: StepContext) -> Tensor:
        """Affine correction ``ctx.y @ W^T + b``, shape ``(*batch, d)``."""
        return self.linear(ctx.y)


def fit_linear_corrector(u: Tensor, r: Tensor, bias: bool = True) -> LinearCorrector:
    """Least-squares fit (float64, ``torch.linalg.lstsq``) of a :class:`LinearCorrector` to pairs.

    Args:
        u: states ``(M, d)``.
        r: one-step residual targets ``(M, d)`` (``u_next - Psi_h(u)``).
        bias: fit an offset too.

    Returns:
        a float64 :class:`LinearCorrector` with ``u @ W^T + b ~= r``.
    """
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"u and r must both be (M, d), got {tuple(u.shape)} and {tuple(r.shape)}")
    u, r = u.double(), r.double()
    a = torch.cat([u, torch.ones_like(u[:, :1])], 1) if bias else u
    sol = torch.linalg.lstsq(a, r, driver="gelsd").solution  # (d[+1], d)
    lc = LinearCorrector(u.shape[1], bias=bias, dtype=torch.float64)
    with torch.no_grad():
        lc.linear.weight.copy_(sol[: u.shape[1]].T)
        if bias:
            lc.linear.bias.copy_(sol[-1])
    return lc
