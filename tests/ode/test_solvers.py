"""Base solvers and odeint: convergence order, torchdiffeq agreement, output contract, step signature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit.ode import (
    CorrectedSolver,
    ODESystem,
    Solver,
    ZeroCorrector,
    create_system,
    get_solver,
    list_solvers,
    odeint,
    register_solver,
)

ORDERS = {"euler": 1, "midpoint": 2, "heun2": 2, "rk4": 4, "rk4_classic": 4}


class Oscillator(ODESystem):
    """y' = [[0, 1], [-1, 0]] y written as q' = p, p' = -q; state [q, p]."""

    dim = 2
    hamiltonian_split = ([0], [1])

    def forward(self, t, y):
        return torch.stack([y[..., 1], -y[..., 0]], -1)


def _decay(t, y):
    return -y


def _slope(method, func, y0, exact, dtype):
    hs = [0.1, 0.05, 0.025, 0.0125]
    errs = []
    for h in hs:
        t = torch.tensor([0.0, 1.0], dtype=dtype)
        sol = odeint(func, y0.to(dtype), t, method=method, options={"step_size": h})
        errs.append(float((sol[-1].double() - exact).abs().max()))
    return np.polyfit(np.log(hs), np.log(errs), 1)[0], errs


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_convergence_order_float64(method):
    s, _ = _slope(
        method,
        _decay,
        torch.tensor([1.0]),
        torch.tensor([math.exp(-1.0)], dtype=torch.float64),
        torch.float64,
    )
    assert abs(s - ORDERS[method]) < 0.2
    y0 = torch.tensor([1.0, 0.0])
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=torch.float64)
    s, _ = _slope(method, Oscillator(), y0, exact, torch.float64)
    assert abs(s - ORDERS[method]) < 0.2


def test_leapfrog_order_float64():
    y0 = torch.tensor([1.0, 0.0])
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=torch.float64)
    s, _ = _slope("leapfrog", Oscillator(), y0, exact, torch.float64)
    assert abs(s - 2) < 0.2


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun2", "leapfrog"])
def test_convergence_order_float32(method):
    order = ORDERS.get(method, 2)
    y0 = torch.tensor([1.0, 0.0])
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=torch.float64)
    s, _ = _slope(method, Oscillator(), y0, exact, torch.float32)
    assert abs(s - order) < 0.2


@pytest.mark.parametrize("method", ["rk4", "rk4_classic"])
def test_rk4_order_float32(method):
    # Over [0, 1] RK4's error at h = 0.1 is already at float32 round-off; use [0, 8] and larger steps.
    hs = [0.8, 0.4, 0.2]
    y0 = torch.tensor([1.0, 0.0])
    exact = torch.tensor([math.cos(8.0), -math.sin(8.0)], dtype=torch.float64)
    errs = []
    for h in hs:
        sol = odeint(Oscillator(), y0, torch.tensor([0.0, 8.0]), method=method, options={"step_size": h})
        assert sol.dtype == torch.float32
        errs.append(float((sol[-1].double() - exact).abs().max()))
    assert abs(np.polyfit(np.log(hs), np.log(errs), 1)[0] - 4) < 0.3


def test_agrees_with_torchdiffeq_and_variants_differ():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    p = create_system("elastic_pendulum")
    y0 = p.sample_initial_conditions(8, torch.Generator().manual_seed(0))
    t = torch.arange(51, dtype=torch.float64) * 0.1
    ours = odeint(p, y0, t, method="rk4", options={"step_size": 0.1})
    ref = torchdiffeq.odeint(p, y0, t, method="rk4", options={"step_size": 0.1})
    assert (ours - ref).abs().max() / ref.abs().max() < 1e-12  # norm-wise relative
    for m in ["euler", "midpoint"]:
        a = odeint(p, y0, t[:11], method=m, options={"step_size": 0.1})
        b = torchdiffeq.odeint(p, y0, t[:11], method=m, options={"step_size": 0.1})
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    classic = get_solver("rk4_classic").step(p, 0.0, y0, 0.1)
    alt = get_solver("rk4").step(p, 0.0, y0, 0.1)
    assert (classic - alt).abs().max() > 1e-8


def test_output_contract_and_errors():
    y0 = torch.randn(3, 5, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    sol = odeint(Oscillator(), y0, t, method="rk4_classic", options={"step_size": 0.05})
    assert sol.shape == (11, 3, 5, 2) and torch.equal(sol[0], y0)
    back = odeint(Oscillator(), sol[-1], t.flip(0), method="rk4_classic", options={"step_size": 0.05})
    assert torch.allclose(back[-1], y0, atol=1e-8)
    with pytest.raises(ValueError, match="not an integer multiple"):
        odeint(Oscillator(), y0, t, method="euler", options={"step_size": 0.03})
    with pytest.raises(ValueError, match="rk4_classic"):
        odeint(Oscillator(), y0, t, method="no_such_method")
    with pytest.raises(ValueError, match="hamiltonian_split"):
        odeint(_decay, y0, t, method="leapfrog")
    with pytest.raises(ValueError, match="exact"):
        odeint(_decay, y0, t, method="exact")


def test_register_solver_adds_method():
    name = "test_ralston2"
    if name not in list_solvers():

        @register_solver(name)
        class Ralston(Solver):
            order, nfe = 2, 2

            def step(self, func, t, y, dt, f0=None):
                k1 = func(t, y) if f0 is None else f0
                k2 = func(t + 2 * dt / 3, y + (2 * dt / 3) * k1)
                return y + dt * (0.25 * k1 + 0.75 * k2)

    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=torch.float64)
    s, _ = _slope(name, Oscillator(), y0, exact, torch.float64)
    assert abs(s - 2) < 0.2
    with pytest.raises(ValueError, match="already registered"):
        register_solver(name)(type("X", (Solver,), {}))


class Counting(Oscillator):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return super().forward(t, y)


@pytest.mark.parametrize("name", ["euler", "midpoint", "heun2", "rk4", "rk4_classic", "leapfrog"])
@pytest.mark.parametrize("batch", [(), (5,), (3, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_signature_and_nfe(name, batch, dtype):
    f = Counting()
    solver = get_solver(name)
    y = torch.randn(*batch, 2, dtype=dtype)
    out = solver.step(f, 0.0, y, 0.1)
    assert out.shape == y.shape and out.dtype == dtype
    assert torch.equal(solver.step(f, 0.0, y, 0.1, f0=f(0.0, y)), out)
    f.calls = 0
    solver.step(f, 0.0, y, 0.1)
    assert f.calls == solver.nfe
    f.calls = 0
    CorrectedSolver(name, ZeroCorrector(), dt=0.1).step(f, 0.0, y, 0.1)
    assert f.calls == solver.nfe
