"""Benchmark dynamical systems: right-hand side, energy, initial conditions and a trusted reference.

All systems are autonomous, ``forward(t, y) -> dy/dt`` with the state in the last dimension.

Reference:
    Spring chain and elastic pendulum as in NeurVec's official code (github.com/dedekinds/NeurVec,
    ``cases/spring_chain``, ``cases/elastic_pend``); spring constants drawn with SRNN's recipe
    (github.com/zhengdao-chen/SRNN, ``src/generate_data.py``). Lorenz-96: Lorenz (1996), Lorenz & Emanuel
    (1998). Henon-Heiles: Henon & Heiles (1964).

Deviations:
    NeurVec loads the spring constants from an unpublished file; attnkit ships fixed constants from the
    same recipe (SRNN's random spring chain, above). Initial-condition distributions of the
    pendulum and Henon-Heiles are attnkit's (the papers' are unknown). Lorenz-96 and Henon-Heiles are attnkit additions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._registry import Registry
from ._registration import class_registrar

__all__ = [
    "SYSTEMS",
    "ODESystem",
    "SpringChain",
    "ElasticPendulum",
    "Lorenz96",
    "HenonHeiles",
    "NeuralField",
    "register_system",
    "create_system",
    "list_systems",
]

SYSTEMS: Registry[type[ODESystem]] = Registry("system")


def register_system(name: str) -> Callable[[type], type]:
    """Class decorator registering an :class:`ODESystem` under ``name``.

    Raises:
        ValueError: the name is already registered.
    """
    return class_registrar(SYSTEMS, name)


def list_systems() -> list[str]:
    """Registered system names, sorted."""
    return SYSTEMS.names()


def create_system(name: str, **kwargs) -> ODESystem:
    """Build a registered system.

    Args:
        name: a :func:`list_systems` name.
        **kwargs: the system's constructor arguments.

    Returns:
        The system module.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    return SYSTEMS.get(name)(**kwargs)


class ODESystem(nn.Module):
    """Base class: an autonomous ODE ``du/dt = f(u)`` with a reference solver.

    Attributes:
        dim, state_names, default_dt, default_steps, default_base, hamiltonian_split.
    """

    name = "system"
    dim: int = 0
    state_names: tuple[str, ...] = ()
    default_dt: float = 0.1
    default_steps: int = 100
    default_base: str = "rk4_classic"
    reference_dt: float = 1e-3
    reference_method: str = "rk4_classic"
    hamiltonian_split: tuple[list[int], list[int]] | None = None

    def forward(self, t: Tensor | float, y: Tensor) -> Tensor:
        """Right-hand side ``dy/dt = f(y)``, shape ``(*batch, dim)`` (``t`` is ignored: autonomous)."""
        raise NotImplementedError

    def constants(self) -> dict:
        """The system's constants (stored in checkpoints and data caches)."""
        return {}

    def energy(self, y: Tensor) -> Tensor:
        """Conserved energy ``(*batch, d) -> (*batch,)``. Raises NotImplementedError where none exists."""
        raise NotImplementedError(f"{self.name} has no conserved energy")

    def exact_step(self, y: Tensor, dt: float) -> Tensor:
        """Exact flow over ``dt``; only linear systems have one."""
        raise NotImplementedError(f"{self.name} has no exact propagator")

    def sample_initial_conditions(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """Draw ``n`` initial states ``(n, d)`` from attnkit's documented distribution."""
        raise NotImplementedError

    def numpy_rhs(self) -> Callable:
        """The right-hand side as a NumPy function ``f(y) -> dy/dt`` on float64 ``(*batch, d)`` arrays.

        For scipy baselines that should not pay torch's per-call overhead. Raises NotImplementedError
        where a system has none.
        """
        raise NotImplementedError(f"{self.name} has no NumPy right-hand side")

    def reference(self, y0: Tensor, dt: float, n_steps: int, substeps: int | None = None) -> Tensor:
        """Trusted reference trajectory ``(n_steps + 1, *y0.shape)`` sampled every ``dt``.

        The exact propagator where one exists, else ``reference_method`` (classical RK4 unless a system
        says otherwise) with ``dt / substeps`` (default ``substeps = round(dt / reference_dt)``, i.e. a
        1e-3 fine step), in the dtype of ``y0`` (use float64). See
        :func:`attnkit.ode.data.check_reference` for the DOP853 cross-check.
        """
        from ._solvers import get_solver

        if substeps is None:
            substeps = max(1, round(dt / self.reference_dt))
        out = [y0]
        y = y0
        has_exact = type(self).exact_step is not ODESystem.exact_step
        rk = get_solver(self.reference_method)
        fine = dt / substeps
        with torch.no_grad():
            for _ in range(n_steps):
                if has_exact:
                    y = self.exact_step(y, dt)
                else:
                    for _ in range(substeps):
                        y = rk.step(self, 0.0, y, fine)
                out.append(y)
        return torch.stack(out, 0)


# Spring constants and masses: SRNN recipe, numpy default_rng(0), 4 decimals.
SPRING_K = (
    5.1572,
    4.8349,
    5.8005,
    5.1311,
    4.3304,
    5.4520,
    6.6300,
    6.1839,
    4.1203,
    3.4182,
    4.2209,
    5.0517,
    2.0937,
    4.7265,
    3.4426,
    4.0847,
    4.3197,
    4.6046,
    5.5145,
    6.3031,
    4.8393,
)
SPRING_M = (
    1.3416,
    0.8337,
    1.0879,
    1.2259,
    1.0235,
    0.8141,
    0.7696,
    0.8856,
    1.0550,
    0.7476,
    0.9477,
    0.9602,
    1.1352,
    1.0537,
    1.0888,
    0.8365,
    0.9676,
    1.1960,
    1.3734,
    0.6852,
)


@register_system("spring_chain")
class SpringChain(ODESystem):
    """20 masses, 21 springs between fixed walls (linear, d = 40); state ``[p_1..p_20, q_1..q_20]``.

    ``u' = A u`` with ``A = [[0, -K], [M^-1, 0]]``; exact propagator ``expm(h A)`` (float64).
    Initial conditions (SRNN): ``p, q ~ U(-2.5, 2.5)`` with the first and last masses at rest at 0.
    """

    default_dt, default_steps, default_base = 0.2, 99, "rk4_classic"

    def __init__(self, k: tuple[float, ...] = SPRING_K, m: tuple[float, ...] = SPRING_M) -> None:
        super().__init__()
        n = len(m)
        if len(k) != n + 1:
            raise ValueError(f"spring_chain needs len(k) == len(m) + 1, got {len(k)} and {len(m)}")
        self.n_mass = n
        self.dim = 2 * n
        self.state_names = tuple(f"p{i + 1}" for i in range(n)) + tuple(f"q{i + 1}" for i in range(n))
        self.hamiltonian_split = (list(range(n, 2 * n)), list(range(n)))
        kk = torch.tensor(k, dtype=torch.float64)
        mm = torch.tensor(m, dtype=torch.float64)
        stiff = torch.diag(kk[:-1] + kk[1:]) - torch.diag(kk[1:-1], 1) - torch.diag(kk[1:-1], -1)  # (n, n)
        a = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
        a[:n, n:] = -stiff
        a[n:, :n] = torch.diag(1.0 / mm)
        self.register_buffer("k", kk)
        self.register_buffer("m", mm)
        self.register_buffer("K", stiff)
        self.register_buffer("A", a)
        self._expm: dict[float, Tensor] = {}

    def constants(self) -> dict:
        """Spring constants ``k`` (``n + 1``) and masses ``m`` (``n``) as lists."""
        return {"k": self.k.tolist(), "m": self.m.tolist()}

    def forward(self, t, y):
        """Right-hand side ``u A^T``, shape ``(*batch, dim)`` (``dim = 2 n``, 40 by default)."""
        return y @ self.A.to(y.dtype).T  # (*batch, 40)

    def numpy_rhs(self):
        """NumPy ``u A^T`` on float64 arrays ``(*batch, dim)``."""
        at = self.A.double().T.numpy().copy()
        return lambda y: y @ at

    def frequencies(self) -> Tensor:
        """Angular frequencies ``sqrt(eig(M^-1 K))`` (rad per time unit), ascending."""
        mi = torch.diag(self.m.rsqrt())
        return torch.linalg.eigvalsh(mi @ self.K @ mi).sqrt()

    def exact_step(self, y, dt):
        """Exact flow ``y expm(dt A)^T`` over ``dt``, shape ``(*batch, dim)``; ``expm`` cached per ``dt``."""
        key = float(dt)
        if key not in self._expm:
            self._expm[key] = torch.linalg.matrix_exp(key * self.A.double())
        return y @ self._expm[key].to(y.dtype).T

    def energy(self, y):
        """Energy ``p^T M^-1 p / 2 + q^T K q / 2``, ``(*batch, dim) -> (*batch,)``."""
        n = self.n_mass
        p, q = y[..., :n], y[..., n:]
        kin = 0.5 * (p * p / self.m.to(y.dtype)).sum(-1)
        pot = 0.5 * ((q @ self.K.to(y.dtype)) * q).sum(-1)
        return kin + pot

    def sample_initial_conditions(self, n, generator=None, dtype=torch.float64):
        """Draw ``n`` states ``(n, dim)``, ``U(-2.5, 2.5)`` with the end masses at rest at 0."""
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64) * 5.0 - 2.5
        nm = self.n_mass
        u[:, [0, nm - 1, nm, 2 * nm - 1]] = 0.0
        return u.to(dtype)


@register_system("elastic_pendulum")
class ElasticPendulum(ODESystem):
    """Elastic (spring) pendulum, d = 4, state ``(theta, r, theta_dot, r_dot)``.

    ``theta'' = (-g sin(theta) - 2 theta' r') / r``; ``r'' = r theta'^2 - (k/m)(r - l0) + g cos(theta)``.
    Constants (official code): l0 = 10, g = 9.81, m = 1, k = 40. Energy
    ``E = m (r'^2 + r^2 theta'^2)/2 + k (r - l0)^2/2 - m g r cos(theta)``.
    Initial conditions (attnkit's choice): theta ~ U(-1, 1), r ~ U(9.5, 11), theta' ~ U(-0.5, 0.5),
    r' ~ U(-1, 1).
    """

    dim = 4
    state_names = ("theta", "r", "theta_dot", "r_dot")
    default_dt, default_steps, default_base = 0.1, 499, "rk4_classic"

    def __init__(self, l0: float = 10.0, g: float = 9.81, m: float = 1.0, k: float = 40.0) -> None:
        super().__init__()
        self.l0, self.g, self.m, self.k = l0, g, m, k

    def constants(self) -> dict:
        """Constants ``l0``, ``g``, ``m``, ``k``."""
        return {"l0": self.l0, "g": self.g, "m": self.m, "k": self.k}

    def forward(self, t, y):
        """Right-hand side ``(theta', r', theta'', r'')``, shape ``(*batch, 4)``."""
        th, r, thd, rd = y.unbind(-1)
        thdd = (-self.g * torch.sin(th) - 2.0 * thd * rd) / r
        rdd = r * thd * thd - (self.k / self.m) * (r - self.l0) + self.g * torch.cos(th)
        return torch.stack([thd, rd, thdd, rdd], -1)

    def numpy_rhs(self):
        """NumPy right-hand side on float64 arrays ``(*batch, 4)`` (the same formula as ``forward``)."""
        import numpy as np

        g, km, l0 = self.g, self.k / self.m, self.l0

        def f(y):
            th, r, thd, rd = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
            out = np.empty_like(y)
            out[..., 0] = thd
            out[..., 1] = rd
            out[..., 2] = (-g * np.sin(th) - 2.0 * thd * rd) / r
            out[..., 3] = r * thd * thd - km * (r - l0) + g * np.cos(th)
            return out

        return f

    def energy(self, y):
        """Total energy (kinetic + spring - gravity), ``(*batch, 4) -> (*batch,)``."""
        th, r, thd, rd = y.unbind(-1)
        return (
            0.5 * self.m * (rd * rd + r * r * thd * thd)
            + 0.5 * self.k * (r - self.l0) ** 2
            - self.m * self.g * r * torch.cos(th)
        )

    def sample_initial_conditions(self, n, generator=None, dtype=torch.float64):
        """Draw ``n`` states ``(n, 4)`` uniformly from the box in the class docstring."""
        lo = torch.tensor([-1.0, 9.5, -0.5, -1.0], dtype=torch.float64)
        hi = torch.tensor([1.0, 11.0, 0.5, 1.0], dtype=torch.float64)
        return (lo + (hi - lo) * torch.rand(n, 4, generator=generator, dtype=torch.float64)).to(dtype)


@register_system("lorenz96")
class Lorenz96(ODESystem):
    """Lorenz-96, ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` (cyclic, d = 40, F = 8; chaotic).

    Initial conditions on the attractor: ``x = F + N(0, 1)``, then ``spinup`` = 30 time units of
    classical RK4 at h = 0.01 (float64). No conserved energy.
    """

    default_dt, default_steps, default_base = 0.1, 1000, "rk4_classic"

    def __init__(self, dim: int = 40, forcing: float = 8.0, spinup: float = 30.0) -> None:
        super().__init__()
        if dim < 4:
            raise ValueError(f"lorenz96 needs dim >= 4, got {dim}")
        self.dim, self.forcing, self.spinup = dim, forcing, spinup
        self.state_names = tuple(f"x{i + 1}" for i in range(dim))

    def constants(self) -> dict:
        """Constants ``dim``, ``forcing`` and ``spinup``."""
        return {"dim": self.dim, "forcing": self.forcing, "spinup": self.spinup}

    def forward(self, t, y):
        """Right-hand side ``(x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``, shape ``(*batch, dim)``."""
        return (torch.roll(y, -1, -1) - torch.roll(y, 2, -1)) * torch.roll(y, 1, -1) - y + self.forcing

    def sample_initial_conditions(self, n, generator=None, dtype=torch.float64):
        """Draw ``n`` states ``(n, dim)`` on the attractor: ``F + N(0, 1)`` spun up by RK4."""
        from ._solvers import RK4Classic

        x = self.forcing + torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        rk = RK4Classic()
        with torch.no_grad():
            for _ in range(round(self.spinup / 0.01)):
                x = rk.step(self, 0.0, x, 0.01)
        return x.to(dtype)


@register_system("henon_heiles")
class HenonHeiles(ODESystem):
    """Henon-Heiles, d = 4, state ``[p1, p2, q1, q2]``; ``H = |p|^2/2 + |q|^2/2 + q1^2 q2 - q2^3/3``.

    Initial conditions (attnkit's choice): ``U(-0.4, 0.4)^4`` rejecting ``H >= 0.15`` (escape at 1/6).
    """

    dim = 4
    state_names = ("p1", "p2", "q1", "q2")
    default_dt, default_steps, default_base = 0.5, 200, "rk4_classic"
    hamiltonian_split = ([2, 3], [0, 1])

    def forward(self, t, y):
        """Right-hand side ``(p1', p2', q1', q2')``, shape ``(*batch, 4)``."""
        p1, p2, q1, q2 = y.unbind(-1)
        return torch.stack([-q1 - 2.0 * q1 * q2, -q2 - q1 * q1 + q2 * q2, p1, p2], -1)

    def energy(self, y):
        """Hamiltonian ``H``, ``(*batch, 4) -> (*batch,)``."""
        p1, p2, q1, q2 = y.unbind(-1)
        return 0.5 * (p1 * p1 + p2 * p2 + q1 * q1 + q2 * q2) + q1 * q1 * q2 - q2**3 / 3.0

    def sample_initial_conditions(self, n, generator=None, dtype=torch.float64):
        """Draw ``n`` states ``(n, 4)`` from ``U(-0.4, 0.4)^4`` with ``H < 0.15`` (rejection)."""
        out = []
        got = 0
        while got < n:
            u = torch.rand(4 * n, 4, generator=generator, dtype=torch.float64) * 0.8 - 0.4
            u = u[self.energy(u) < 0.15]
            out.append(u)
            got += len(u)
        return torch.cat(out)[:n].to(dtype)


from .neural_field import NeuralField  # noqa: E402  (registers "neural_field"; re-exported)
