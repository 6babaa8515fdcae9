"""Systems, references, data pairs and metrics."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from attnkit.ode import (
    CorrectedSolver,
    blowup_rate,
    create_system,
    energy_drift,
    ensemble_statistics,
    fit_linear_corrector,
    list_systems,
    make_pairs,
    make_trajectories,
    odeint,
    rollout,
    trajectory_mse,
)
from attnkit.ode.data import check_reference, load_or_make


def test_registry_and_shapes():
    assert {"spring_chain", "elastic_pendulum", "lorenz96", "henon_heiles"} <= set(list_systems())
    with pytest.raises(ValueError, match="elastic_pendulum"):
        create_system("nope")
    for name in ["spring_chain", "elastic_pendulum", "henon_heiles"]:
        s = create_system(name)
        y = s.sample_initial_conditions(7, torch.Generator().manual_seed(0))
        assert y.shape == (7, s.dim) and s(0.0, y).shape == y.shape
        assert s.energy(y).shape == (7,)
    with pytest.raises(NotImplementedError):
        create_system("lorenz96").energy(torch.zeros(3, 40))


def test_spring_chain_constants_and_exact_propagator():
    s = create_system("spring_chain")
    w = s.frequencies()
    assert float(w.min()) == pytest.approx(0.3394, abs=1e-4)
    assert float(w.max()) == pytest.approx(5.2221, abs=1e-4)
    euler_map = torch.eye(40, dtype=torch.float64) + 0.2 * s.A
    assert float(torch.linalg.eigvals(euler_map).abs().max()) == pytest.approx(1.4460, abs=1e-4)
    y0 = s.sample_initial_conditions(20, torch.Generator().manual_seed(0))
    ex = s.reference(y0, 0.2, 100)
    e = s.energy(ex)
    assert ((e - e[0]).abs() / e[0].abs()).max() < 1e-12
    t = torch.arange(101, dtype=torch.float64) * 0.2
    rk = odeint(s, y0, t[:11], method="rk4_classic", options={"step_size": 1e-3})
    assert (rk - ex[:11]).abs().max() < 5e-8
    lf = odeint(s, y0, t[:11], method="leapfrog", options={"step_size": 0.01})
    assert (lf - ex[:11]).abs().max() < 0.05


def test_pendulum_reference_halving_and_dop853():
    p = create_system("elastic_pendulum")
    y0 = p.sample_initial_conditions(4, torch.Generator().manual_seed(0))
    a = p.reference(y0, 0.1, 50, substeps=50)
    b = p.reference(y0, 0.1, 50, substeps=100)
    assert trajectory_mse(a, b) < 1e-14
    ed = energy_drift(p, b)
    assert float(ed[0].abs().max()) == 0.0 and float(ed[-1].median()) < 1e-9
    assert check_reference(p, b, 0.1, n_check=2) < 1e-8


def test_pendulum_classical_numbers():
    # spec §12 item 12 (tolerance factor 2), on 40 test trajectories with a 5e-3 reference
    p = create_system("elastic_pendulum")
    ref = make_trajectories(p, 40, seed=0, reference_substeps=10)  # RK4(0.01): MSE ~7e-10, negligible here
    t = torch.arange(500, dtype=torch.float64) * 0.1
    mse = trajectory_mse(odeint(p, ref[0], t, method="rk4_classic", options={"step_size": 0.1}), ref)
    assert 2.8e-2 <= mse <= 1.1e-1


def test_linear_corrector_exact_on_spring_chain():
    s = create_system("spring_chain")
    train = make_trajectories(s, 100, seed=1)
    test = make_trajectories(s, 20, seed=0)
    for base in ["euler", "rk4_classic"]:
        u, r = make_pairs(train, s, base, 0.2)
        assert u.shape == (99 * 100, 40)
        lc = fit_linear_corrector(u, r, bias=False)
        pred = rollout(CorrectedSolver(base, lc, dt=0.2), s, test[0], 99, 0.2)
        assert trajectory_mse(pred, test) <= 1e-20


def test_lorenz96_blowup_at_coarse_step():
    lz = create_system("lorenz96", spinup=5.0)
    y0 = lz.sample_initial_conditions(20, torch.Generator().manual_seed(0))
    t = torch.arange(101, dtype=torch.float64) * 0.2
    coarse = odeint(lz, y0, t, method="rk4_classic", options={"step_size": 0.2})
    fine = odeint(lz, y0, t[:51], method="rk4_classic", options={"step_size": 0.1})
    assert blowup_rate(coarse) >= 0.5 and blowup_rate(fine) == 0.0


def test_metrics():
    ref = torch.randn(11, 50, 3, dtype=torch.float64)
    assert trajectory_mse(ref, ref) == 0.0
    pred = ref.clone()
    pred[0] += 5.0
    assert trajectory_mse(pred, ref) == 0.0  # t = 0 excluded
    pred = ref + 0.1 * torch.randn_like(ref)
    st = ensemble_statistics(pred, ref)
    a, b = pred[1:, :, 0].reshape(-1), ref[1:, :, 0].reshape(-1)
    w1 = (
        sum(
            scipy.stats.wasserstein_distance(pred[1:, :, i].reshape(-1), ref[1:, :, i].reshape(-1))
            for i in range(3)
        )
        / 3
    )
    assert st["w1"] == pytest.approx(w1, abs=1e-10) and a.shape == b.shape
    bad = ref.clone()
    bad[5, 3, 1] = float("nan")
    bad[7, 9, 0] = 1e4
    assert blowup_rate(bad) == pytest.approx(2 / 50)


def test_cache_roundtrip(tmp_path):
    p = create_system("elastic_pendulum")
    a = load_or_make(p, "val", 3, n_steps=5, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    blob = torch.load(files[0], weights_only=False)
    assert blob["meta"]["seed"] == 2 and blob["dop853_max_abs_diff"] < 1e-8
    b = load_or_make(p, "val", 3, n_steps=5, cache_dir=tmp_path)
    assert torch.equal(a, b)
