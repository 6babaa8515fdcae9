"""Fixed-step explicit base solvers and the solver registry.

Every solver is an ``nn.Module`` with an ``order``, an ``nfe`` (right-hand-side evaluations per step)
and ``step(func, t, y, dt, f0=None) -> y_next``. Names follow torchdiffeq where one exists; note that
torchdiffeq's ``rk4`` is the **3/8 rule**, and classical RK4 (NeurVec's base) is ``rk4_classic``.

Reference:
    torchdiffeq, github.com/rtqichen/torchdiffeq, ``torchdiffeq/_impl/fixed_grid.py`` and
    ``rk_common.py`` (``rk4_alt_step_func``: the 3/8 rule used by its ``rk4``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .._registry import Registry
from ._registration import class_registrar

__all__ = [
    "SOLVERS",
    "Solver",
    "Euler",
    "Midpoint",
    "Heun2",
    "RK4",
    "RK4Classic",
    "RK8",
    "Leapfrog",
    "Exact",
    "register_solver",
    "get_solver",
    "list_solvers",
]

SOLVERS: Registry[type[Solver]] = Registry("fixed-step solver")
_ONE_THIRD = 1.0 / 3.0
_TWO_THIRDS = 2.0 / 3.0

Func = Callable[[Tensor, Tensor], Tensor]


def register_solver(name: str) -> Callable[[type], type]:
    """Class decorator registering a fixed-step :class:`Solver` subclass under ``name``.

    Args:
        name: method name usable as ``odeint(..., method=name)``.

    Returns:
        The decorator; it returns the class unchanged (with ``cls.name = name``).

    Raises:
        ValueError: if ``name`` is already registered or the class is not a :class:`Solver`.
    """
    return class_registrar(SOLVERS, name, base=Solver, caller="register_solver")


def list_solvers() -> list[str]:
    """Names of the registered fixed-step solvers, sorted."""
    return SOLVERS.names()


def get_solver(name: str | Solver) -> Solver:
    """Return a solver instance for a registered name (or the instance itself).

    Raises:
        ValueError: for an unknown name; the message lists the registered names.
    """
    if isinstance(name, Solver):
        return name
    return SOLVERS.get(name)()


class Solver(nn.Module):
    """Base class of fixed-step explicit one-step solvers.

    Subclasses set ``order`` and ``nfe`` and implement :meth:`step`.

    Shape:
        y: ``(*batch, d)``; ``step`` returns the same shape and dtype.
    """

    name: str = "solver"
    order: int = 0
    nfe: int = 1

    def step(self, func: Func, t: Tensor | float, y: Tensor, dt: float, f0: Tensor | None = None) -> Tensor:
        """One step ``y_{n+1} = Psi_dt(y_n)``; ``f0 = func(t, y)`` is reused as the first stage if given."""
        raise NotImplementedError

    def forward(self, func: Func, t: Tensor | float, y: Tensor, dt: float) -> Tensor:  # pragma: no cover
        return self.step(func, t, y, dt)

    def extra_repr(self) -> str:
        return f"order={self.order}, nfe={self.nfe}"


@register_solver("euler")
class Euler(Solver):
    """Forward Euler, ``y + h f(t, y)`` (order 1)."""

    order, nfe = 1, 1

    def step(self, func, t, y, dt, f0=None):
        k1 = func(t, y) if f0 is None else f0
        return y + dt * k1


@register_solver("midpoint")
class Midpoint(Solver):
    """Explicit midpoint, ``k2 = f(t + h/2, y + h/2 k1)``, ``y + h k2`` (order 2), as torchdiffeq."""

    order, nfe = 2, 2

    def step(self, func, t, y, dt, f0=None):
        k1 = func(t, y) if f0 is None else f0
        half = 0.5 * dt
        return y + dt * func(t + half, y + half * k1)


@register_solver("heun2")
class Heun2(Solver):
    """Heun's (trapezoidal predictor-corrector) method, order 2."""

    order, nfe = 2, 2

    def step(self, func, t, y, dt, f0=None):
        k1 = func(t, y) if f0 is None else f0
        k2 = func(t + dt, y + dt * k1)
        return y + (0.5 * dt) * (k1 + k2)


@register_solver("rk4")
class RK4(Solver):
    """Kutta's 3/8-rule RK4 (order 4): torchdiffeq's ``rk4``, same operation order.

    ``c = (0, 1/3, 2/3, 1)``; ``y + h (k1 + 3 k2 + 3 k3 + k4) / 8``.

    Deviations:
        None from torchdiffeq's ``rk4_alt_step_func``. This is NOT classical RK4 (``rk4_classic``).
    """

    order, nfe = 4, 4

    def step(self, func, t, y, dt, f0=None):
        k1 = func(t, y) if f0 is None else f0
        k2 = func(t + dt * _ONE_THIRD, y + dt * k1 * _ONE_THIRD)
        k3 = func(t + dt * _TWO_THIRDS, y + dt * (k2 - k1 * _ONE_THIRD))
        k4 = func(t + dt, y + dt * (k1 - k2 + k3))
        return y + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125


@register_solver("rk4_classic")
class RK4Classic(Solver):
    """Classical RK4 (order 4): ``c = (0, 1/2, 1/2, 1)``, ``b = (1/6, 1/3, 1/3, 1/6)``; NeurVec's base."""

    order, nfe = 4, 4

    def step(self, func, t, y, dt, f0=None):
        k1 = func(t, y) if f0 is None else f0
        half = 0.5 * dt
        k2 = func(t + half, y + half * k1)
        k3 = func(t + half, y + half * k2)
        k4 = func(t + dt, y + dt * k3)
        return y + (dt / 6.0) * (k1 + 2 * (k2 + k3) + k4)


@register_solver("rk8")
class RK8(Solver):
    """Fixed-step 8th-order Runge-Kutta with the DOP853 tableau (12 stages, no error control).

    The 12 main stages of Dormand and Prince's DOP853 and its 8th-order weights ``b``, stepped at a
    fixed ``h``; the embedded error estimates and dense output are not used. The coefficients are read
    from scipy (``scipy.integrate._ivp.dop853_coefficients``, the same numbers as Hairer's Fortran
    ``dop853.f``) once, in float64, and cast to the state's dtype.

    Shape:
        ``y`` ``(*batch, d)`` -> same shape and dtype.

    Reference:
        Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", 2nd ed., Springer 1993,
        section II.10 (DOP853); E. Hairer's ``dop853.f``.

    Deviations:
        A fixed-step solver: DOP853 is adaptive; here the step is the caller's ``dt``.
    """

    order, nfe = 8, 12

    def __init__(self) -> None:
        super().__init__()
        from scipy.integrate._ivp import dop853_coefficients as c

        n = c.N_STAGES
        # a[i] = row i of the Butcher matrix (only its first i entries are non-zero)
        self._a = [[float(v) for v in c.A[i, :i]] for i in range(n)]
        self._b = [float(v) for v in c.B[:n]]
        self._c = [float(v) for v in c.C[:n]]

    def step(self, func, t, y, dt, f0=None):
        ks = [func(t, y) if f0 is None else f0]
        for i in range(1, len(self._b)):
            acc = ks[0] * self._a[i][0]
            for j in range(1, i):
                if self._a[i][j] != 0.0:
                    acc = acc + ks[j] * self._a[i][j]
            ks.append(func(t + self._c[i] * dt, y + dt * acc))
        inc = ks[0] * self._b[0]
        for j in range(1, len(ks)):
            if self._b[j] != 0.0:
                inc = inc + ks[j] * self._b[j]
        return y + dt * inc


@register_solver("leapfrog")
class Leapfrog(Solver):
    """Stormer-Verlet leapfrog (kick-drift-kick, order 2, symplectic) for separable Hamiltonians.

    ``func`` must be an ``ODESystem`` whose ``hamiltonian_split`` returns ``(q_index, p_index)``; the
    q-rate is read from ``func(t, y)[..., q_index]`` (depends on p only) and the p-rate from
    ``func(t, y)[..., p_index]`` (depends on q only).

    Raises:
        ValueError: if ``func`` has no separable ``hamiltonian_split``.
    """

    order, nfe = 2, 3

    def step(self, func, t, y, dt, f0=None):
        split = getattr(func, "hamiltonian_split", None)
        if split is None:
            raise ValueError("leapfrog needs an ODESystem with a separable hamiltonian_split (q, p indices)")
        qi, pi = split
        k = func(t, y) if f0 is None else f0
        y = y.clone()
        y[..., pi] = y[..., pi] + (0.5 * dt) * k[..., pi]  # half kick
        y[..., qi] = y[..., qi] + dt * func(t, y)[..., qi]  # drift with the new p
        y[..., pi] = y[..., pi] + (0.5 * dt) * func(t + dt, y)[..., pi]  # half kick with the new q
        return y


@register_solver("exact")
class Exact(Solver):
    """Exact propagator ``func.exact_step(y, dt)`` (linear systems such as ``spring_chain``).

    Raises:
        ValueError: if ``func`` has no ``exact_step``.
    """

    order, nfe = 99, 0

    def step(self, func, t, y, dt, f0=None):
        ex = getattr(func, "exact_step", None)
        if ex is None:
            raise ValueError("method 'exact' needs an ODESystem with exact_step (a linear system)")
        try:
            return ex(y, dt)
        except NotImplementedError as e:
            raise ValueError(f"method 'exact': {type(func).__name__} has no exact propagator") from e
