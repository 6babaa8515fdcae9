"""Training: a NeurVec really learns the pendulum residual, checkpoints round-trip, runs resume, CLI."""

from __future__ import annotations

import argparse

import pytest
import torch

from attnkit.ode import (
    CorrectedSolver,
    blowup_rate,
    build_corrector,
    create_system,
    load_checkpoint,
    odeint,
    rollout,
    train_corrector,
    trajectory_mse,
)
from attnkit.ode.train import _prepare


@pytest.fixture(scope="module")
def pend_data():
    p = create_system("elastic_pendulum")
    # One batched reference for the three splits (seeds 1/2/0 as the library's defaults), fine step 1e-2:
    # RK4(0.01)'s own MSE is ~7e-10, far below the ~1e-4 errors this test resolves.
    y0 = torch.cat(
        [
            p.sample_initial_conditions(n, torch.Generator().manual_seed(s))
            for n, s in [(100, 1), (10, 2), (50, 0)]
        ]
    )
    traj = p.reference(y0, 0.1, 499, substeps=10)
    return p, traj[:, :100], traj[:101, 100:110], traj[:, 110:]


@pytest.mark.slow
def test_neurvec_learns_pendulum(pend_data):
    p, train, val, test = pend_data
    torch.manual_seed(0)
    solver = CorrectedSolver("rk4_classic", build_corrector("neurvec", 4, hidden=64), dt=0.1)
    res = train_corrector(
        solver, p, train, val, iterations=1000, batch_size=512, val_every=500, log=lambda *a: None
    )
    pred = rollout(solver, p, test[0], 499, 0.1)
    t = torch.arange(500, dtype=torch.float64) * 0.1
    base = odeint(p, test[0], t, method="rk4_classic", options={"step_size": 0.1})
    ratio = trajectory_mse(base, test) / trajectory_mse(pred, test)
    assert ratio >= 100, ratio
    assert blowup_rate(pred) == 0.0
    assert len(res.history) == 2 and res.best_state is not None and res.final_state is not None


def test_fraction_and_noise_really_applied(pend_data):
    p, train, _, _ = pend_data
    s = CorrectedSolver("rk4_classic", build_corrector("neurvec", 4, hidden=8), dt=0.1)
    full = _prepare(s, p, train, 1.0, 0.0, 0)
    part = _prepare(s, p, train, 0.1, 0.0, 0)
    noisy = _prepare(s, p, train, 1.0, 1e-2, 0)
    assert part["u"].shape[0] == full["u"].shape[0] // 10 and len(part["traj_idx"]) == 10
    diff = (noisy["u"] - full["u"]) / full["u"].std(0)
    assert 0.5e-2 < float(diff.std()) < 2e-2
    res = train_corrector(
        s, p, train, None, iterations=5, batch_size=64, data_fraction=0.1, noise_std=1e-3, log=lambda *a: None
    )
    assert res.n_pairs == part["u"].shape[0]


def test_checkpoint_roundtrip_and_resume(pend_data, tmp_path):
    p, train, val, test = pend_data
    tr, va = train[:50, :20], val[:20, :4]

    def make():
        torch.manual_seed(0)
        c = build_corrector("attns", 4, hidden=16, dtype=torch.float64)
        return CorrectedSolver("rk4_classic", c, dt=0.1)

    quiet = {"log": lambda *a: None}
    a = make()
    train_corrector(a, p, tr, va, iterations=40, batch_size=32, val_every=10, out_dir=tmp_path / "a", **quiet)
    b = make()
    train_corrector(
        b,
        p,
        tr,
        va,
        iterations=40,
        batch_size=32,
        val_every=10,
        out_dir=tmp_path / "b",
        stop_after=20,
        **quiet,
    )
    assert not (tmp_path / "b" / "final.pt").exists()
    b = make()
    train_corrector(
        b, p, tr, va, iterations=40, batch_size=32, val_every=10, out_dir=tmp_path / "b", resume=True, **quiet
    )
    fa = torch.load(tmp_path / "a" / "final.pt", weights_only=False)["corrector_state"]
    fb = torch.load(tmp_path / "b" / "final.pt", weights_only=False)["corrector_state"]
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    solver, system, ck = load_checkpoint(tmp_path / "a" / "final.pt")
    a.corrector.load_state_dict(fa)
    y0 = test[0, :5]
    assert torch.equal(rollout(solver, system, y0, 20, 0.1), rollout(a, p, y0, 20, 0.1))
    assert ck["base"] == "rk4_classic" and ck["dt"] == 0.1 and ck["system"] == "elastic_pendulum"


@pytest.mark.slow
def test_cli_train_eval(tmp_path):
    from attnkit.commands import ode

    parser = argparse.ArgumentParser()
    ode.add_arguments(parser)
    run = tmp_path / "run"
    args = parser.parse_args(
        [
            "train",
            "--system",
            "elastic_pendulum",
            "--corrector",
            "neurvec",
            "--hidden",
            "16",
            "--iterations",
            "30",
            "--batch-size",
            "64",
            "--n-train",
            "8",
            "--n-val",
            "2",
            "--steps",
            "30",
            "--val-every",
            "15",
            "--reference-substeps",
            "10",
            "--out",
            str(run),
        ]
    )
    assert ode.main(args) == 0
    assert {"best.pt", "final.pt", "last.pt", "config.json", "metrics.jsonl"} <= {
        f.name for f in run.iterdir()
    }
    args = parser.parse_args(
        ["eval", "--run", str(run), "--n-test", "4", "--classical", "0.1,0.05", "--dop853", "1e-6"]
    )
    assert ode.main(args) == 0
    assert (run / "metrics.json").exists() and (run / "pareto.png").exists()
    assert (run / "error_over_time.png").exists() and "DOP853" in (run / "metrics.md").read_text()
