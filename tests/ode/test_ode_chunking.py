"""Fast rollouts: blocks of the ensemble, fused (compiled) steps, the fixed-step RK8 and the neural field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit.ode import CorrectedSolver, NeurVec, create_system, odeint
from attnkit.ode.fast import best_chunk_size, fast_rollout


def _corrected(dim=4, hidden=32, dtype=torch.float64):
    torch.manual_seed(0)
    nv = NeurVec(dim, hidden=hidden, dtype=dtype)
    with torch.no_grad():
        nv.fc2.weight.mul_(1e-3)
    return CorrectedSolver("rk4_classic", nv, dt=0.1)


def test_chunked_equals_unchunked_float64():
    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(300, generator=torch.Generator().manual_seed(0))
    s = _corrected()
    full = fast_rollout(s, sys, y0, 40, 0.1)
    for block in (64, 128, 299):
        part = fast_rollout(s, sys, y0, 40, 0.1, chunk=block)
        assert (part - full).abs().max().item() <= 1e-12
    best_chunk_size(s, sys, y0, 0.1, candidates=(100, 200), probe_steps=1, rounds=1)
    auto = fast_rollout(s, sys, y0, 40, 0.1, chunk="auto")  # the cached measurement
    assert (auto - full).abs().max().item() <= 1e-12


def test_fast_rollout_matches_odeint_and_substeps():
    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(20, generator=torch.Generator().manual_seed(1))
    s = _corrected()
    t = torch.arange(11, dtype=torch.float64) * 0.1
    assert torch.allclose(fast_rollout(s, sys, y0, 10, 0.1), odeint(sys, y0, t, method=s), rtol=0, atol=1e-13)
    ref = odeint(sys, y0, t, method="rk4_classic", options={"step_size": 0.025})
    got = fast_rollout("rk4_classic", sys, y0, 10, 0.025, substeps=4)
    assert got.shape == (11, 20, 4) and torch.allclose(got, ref, rtol=0, atol=1e-13)
    with pytest.raises(ValueError):
        fast_rollout(s, sys, y0, 10, 0.05)  # not the trained dt
    with pytest.raises(ValueError):
        fast_rollout(s, sys, y0, 10, 0.1, chunk=0)


def test_float32_state_option():
    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(50, generator=torch.Generator().manual_seed(2))
    s = _corrected(dtype=torch.float32)
    out32 = fast_rollout(s, sys, y0, 20, 0.1, dtype=torch.float32)
    out64 = fast_rollout(s, sys, y0, 20, 0.1)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    assert (out32.double() - out64).abs().max().item() < 1e-3


def test_best_chunk_size_is_a_candidate():
    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(600)
    b = best_chunk_size(_corrected(), sys, y0, 0.1, candidates=(128, 256), probe_steps=2, rounds=1)
    assert b in (128, 256, 600)


def test_named_solver_block_size_is_measured_once(monkeypatch):
    """A name builds a new solver instance per call; the measured block size must still be reused
    (re-probing inside every rollout would add the probe's time to every timed baseline run)."""
    from attnkit.ode import fast

    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(300, generator=torch.Generator().manual_seed(4))
    fast.clear_caches()
    probes = []
    real = fast._get_stepper
    monkeypatch.setattr(fast, "_get_stepper", lambda *a, **k: probes.append(1) or real(*a, **k))
    first = fast_rollout("rk4_classic", sys, y0, 5, 0.1, chunk="auto")
    n_first = len(probes)
    keep = [fast.get_solver("rk4_classic") for _ in range(8)]  # the freed instance's address is taken
    second = fast_rollout("rk4_classic", sys, y0, 5, 0.1, chunk="auto")
    assert len(probes) - n_first == 1  # the rollout's own stepper only: no second probe
    assert len(fast._BEST_CHUNK) == 1 and torch.equal(first, second)
    fast.clear_caches()
    del keep


@pytest.mark.slow  # torch.compile of a corrected step takes 30-60 s on a loaded 2-core CPU
def test_compiled_equals_eager():
    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(200, generator=torch.Generator().manual_seed(3))
    s = _corrected(dtype=torch.float32)
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        eager = fast_rollout(s, sys, y0, 30, 0.1, dtype=dtype)
        comp = fast_rollout(s, sys, y0, 30, 0.1, dtype=dtype, compile=True, chunk=64)
        assert (comp - eager).abs().max().item() <= tol * eager.abs().max().item()
    base_e = fast_rollout("rk4_classic", sys, y0, 30, 0.05, substeps=2)
    base_c = fast_rollout("rk4_classic", sys, y0, 30, 0.05, substeps=2, compile=True)
    assert (base_c - base_e).abs().max().item() <= 1e-10
    from attnkit.ode import fast

    n_graphs = len(fast._COMPILED)
    fast_rollout("rk4_classic", sys, y0, 30, 0.025, substeps=4, compile=True)  # a new h: same graph
    assert len(fast._COMPILED) == n_graphs


def test_rk8_is_eighth_order():
    errs = []
    hs = (0.5, 0.25, 0.125)
    for h in hs:
        y = odeint(
            lambda t, y: -y,
            torch.ones(1, dtype=torch.float64),
            torch.tensor([0.0, 4.0]).double(),
            method="rk8",
            options={"step_size": h},
        )
        errs.append(abs(y[-1].item() - math.exp(-4.0)))
    slope = np.polyfit(np.log(hs[:2]), np.log(errs[:2]), 1)[0]
    assert abs(slope - 8.0) < 0.3
    assert errs[-1] < 1e-15


def test_neural_field_is_deterministic_and_numpy_rhs_agrees():
    a, b = create_system("neural_field", n_fit=2000), create_system("neural_field", n_fit=2000)
    assert torch.equal(a.fc3.weight, b.fc3.weight)
    assert a.fit_rmse < 0.5  # a close fit of the pendulum's field (|f| up to ~40) inside its box
    y = a.sample_initial_conditions(7, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(a.numpy_rhs()(y.numpy()), a(0.0, y).numpy(), rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in a.parameters()) == 4 * 512 + 512 + 512 * 512 + 512 + 512 * 4 + 4
    pend = create_system("elastic_pendulum")
    np.testing.assert_allclose(pend.numpy_rhs()(y.numpy()), pend(0.0, y).numpy(), rtol=1e-13, atol=1e-13)


def test_adaptive_baselines_agree_with_reference():
    pytest.importorskip("torchdiffeq")
    pytest.importorskip("torchode")
    from attnkit.ode._baselines import dop853_ensemble, torchdiffeq_ensemble, torchode_ensemble

    sys = create_system("elastic_pendulum")
    y0 = sys.sample_initial_conditions(8, generator=torch.Generator().manual_seed(4))
    ref = sys.reference(y0, 0.1, 20)
    t = torch.arange(21, dtype=torch.float64) * 0.1
    for out, _ in (
        dop853_ensemble(sys, y0, t.numpy(), 1e-9),
        torchdiffeq_ensemble(sys, y0, t, 1e-9),
        torchode_ensemble(sys, y0, t, 1e-8),
    ):
        assert out.shape == ref.shape and (out - ref).abs().max().item() < 1e-4
