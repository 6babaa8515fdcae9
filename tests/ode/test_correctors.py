"""Correctors: zero corrector exactness, parameter counts, folding, dt/base guards, AttNS bounds."""

from __future__ import annotations

import pytest
import torch

from attnkit.ode import (
    AttNSRecon,
    CorrectedSolver,
    NeurVec,
    RationalActivation,
    StepContext,
    ZeroCorrector,
    create_system,
    odeint,
)

BASES = ["euler", "midpoint", "heun2", "rk4", "rk4_classic"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_corrector_reproduces_base_bitwise(base, dtype):
    p = create_system("elastic_pendulum")
    y0 = p.sample_initial_conditions(6, torch.Generator().manual_seed(3), dtype=dtype)
    t = torch.arange(21, dtype=dtype) * 0.1
    ref = odeint(p, y0, t, method=base, options={"step_size": 0.1})
    got = odeint(p, y0, t, method=CorrectedSolver(base, ZeroCorrector(), dt=0.1))
    assert torch.equal(got, ref)


def _fitted_inputs(p, n=64):
    u = p.sample_initial_conditions(n, torch.Generator().manual_seed(1))
    r = torch.randn(n, p.dim, dtype=torch.float64) * 1e-4
    inc = torch.randn(n, p.dim, dtype=torch.float64) * 0.1
    return u, r, inc


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_init_networks_reproduce_base(dtype):
    p = create_system("elastic_pendulum")
    u, r, inc = _fitted_inputs(p)
    y0 = u[:5].to(dtype)
    t = torch.arange(11, dtype=dtype) * 0.1
    ref = odeint(p, y0, t, method="rk4_classic", options={"step_size": 0.1})
    mods = [
        NeurVec(4, hidden=32, zero_init_last=True).fit_normalizer(u, r),
        AttNSRecon(4, hidden=32, zero_init_last=True).fit_normalizer(u, r, increment=inc),
        AttNSRecon(4, hidden=32, mode="multiplicative", zero_init_last=True).fit_normalizer(u, r, inc),
    ]
    for m in mods:
        got = odeint(p, y0, t, method=CorrectedSolver("rk4_classic", m, dt=0.1))
        assert torch.equal(got, ref), m


def test_parameter_counts_and_rational_init():
    assert sum(p.numel() for p in NeurVec(4).parameters()) == 9227
    assert sum(p.numel() for p in NeurVec(40).parameters()) == 82991
    act = RationalActivation()
    assert act.numerator.tolist() == pytest.approx([0.0218, 0.5, 1.5957, 1.1915])
    assert act.denominator.tolist() == pytest.approx([1.0, 0.0, 2.383])
    assert not act.has_real_pole()
    x = torch.linspace(-1, 1, 41)
    assert (act(x) - torch.relu(x)).abs().max() < 0.05  # a rational approximation of ReLU on [-1, 1]
    assert "1.1915" in repr(act)


def test_fold_normalization_matches():
    p = create_system("elastic_pendulum")
    u, r, _ = _fitted_inputs(p)
    net = NeurVec(4, hidden=64, dtype=torch.float64).fit_normalizer(u, r)
    folded = net.fold_normalization()
    assert folded.normalize == "none"
    assert sum(x.numel() for x in folded.parameters()) == sum(x.numel() for x in net.parameters())
    a, b = net(u), folded(u)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-6 * a.abs().max().item())


def test_dt_and_base_guards():
    p = create_system("elastic_pendulum")
    y0 = p.sample_initial_conditions(2, torch.Generator().manual_seed(0))
    s = CorrectedSolver("rk4_classic", NeurVec(4, hidden=8, dtype=torch.float64), dt=0.1)
    with pytest.raises(ValueError, match="trained for dt"):
        odeint(p, y0, torch.tensor([0.0, 0.2], dtype=torch.float64), method=s, options={"step_size": 0.05})
    from attnkit.ode import get_solver

    with pytest.raises(ValueError, match="rk4_classic"):
        s.check(0.1, get_solver("rk4"))
    with pytest.raises(ValueError, match="conflicts"):
        CorrectedSolver("rk4", AttNSRecon(4, hidden=8, mode="multiplicative"), dt=0.1, insert="additive")
    with pytest.raises(ValueError, match="tuple"):
        s.step(p, 0.0, (y0, y0), 0.1)


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_attns_bounded(mode):
    p = create_system("elastic_pendulum")
    u, r, inc = _fitted_inputs(p)
    m = AttNSRecon(4, hidden=32, mode=mode, dtype=torch.float64).fit_normalizer(u, r, increment=inc)
    big = torch.randn(256, 4, dtype=torch.float64)
    big = big / big.norm(dim=-1, keepdim=True) * torch.logspace(0, 6, 256, dtype=torch.float64)[:, None]
    out = m(StepContext(0.0, big, 0.1, big, big))
    assert torch.isfinite(out).all()
    bound = m.s * (m.out_std if mode == "additive" else 1.0)
    assert (out.abs() <= bound * (1 + 1e-12)).all()


@pytest.mark.parametrize("inputs", ["increment", "state", "state+increment"])
def test_attns_gradients_reach_every_parameter(inputs):
    p = create_system("elastic_pendulum")
    u, r, inc = _fitted_inputs(p)
    m = AttNSRecon(4, hidden=16, inputs=inputs, spectral_norm=inputs == "state").fit_normalizer(u, r, inc)
    out = m(StepContext(0.0, u.float(), 0.1, u.float(), inc.float()))
    out.pow(2).sum().backward()
    for name, prm in m.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name
