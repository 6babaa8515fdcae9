"""Resume: an interrupted run continues exactly like an uninterrupted one (acceptance check 16), including
a real SIGKILL of a training process."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from attnkit.train import fit


class _Crash(RuntimeError):
    pass


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted(quick_config, load_weights):
    """Check 16: 6 epochs, milestones [2, 4]; interrupted after epochs 0-2 and resumed."""
    kw = dict(epochs=6, milestones=[2, 4], lr=0.1, gamma=0.1, train_subset=256)
    full = quick_config(run_name="full", **kw)
    fit(full)

    def crash_after_epoch_2(info):
        if info["epoch"] == 2:
            raise _Crash("simulated interruption after three completed epochs")

    part = quick_config(run_name="part", **kw)
    with pytest.raises(_Crash):
        fit(part, callbacks=[crash_after_epoch_2])
    assert len(_rows(part.run_dir)) == 3 and not (part.run_dir / "summary.json").exists()
    summary = fit(quick_config(run_name="part", resume="auto", **kw))

    a, b = _rows(full.run_dir), _rows(part.run_dir)
    assert [r["epoch"] for r in b] == [str(e) for e in range(6)]  # exactly 6 data rows
    assert [float(r["lr"]) for r in b] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    wa, wb = load_weights(full.run_dir), load_weights(part.run_dir)
    assert max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa) <= 1e-6
    assert [r["eval_top1"] for r in a] == [r["eval_top1"] for r in b]
    assert summary["final_eval_top1"] == pytest.approx(float(a[-1]["eval_top1"]), abs=1e-4)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_auto(tmp_path, load_weights):
    """A training process is SIGKILLed after its first checkpoint; ``--resume auto`` finishes the run with the
    same metrics and parameters as an uninterrupted run of the same seed (CPU, 32-true, workers=0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [
        sys.executable,
        "-m",
        "attnkit.cli",
        "train",
        "--recipe",
        "quick",
        "--train-subset",
        "320",
        "--epochs",
        "6",
        "--scheduler",
        "step",
        "--milestones",
        "2",
        "4",
        "--lr",
        "0.1",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--progress",
        "lines",
        "--out-dir",
        str(tmp_path),
    ]

    def run(name, *extra):
        subprocess.run(
            args + ["--run-name", name, *extra], env=env, check=True, capture_output=True, timeout=600
        )

    run("ref")
    killed = tmp_path / "killed"
    p = subprocess.Popen(
        args + ["--run-name", "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 600
        while not (killed / "last.ckpt").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    done = torch.load(killed / "last.ckpt", weights_only=True)["epoch"]
    assert done < 5, "the process finished before it could be killed"
    assert not (killed / "summary.json").exists()
    run("killed", "--resume", "auto")

    ref, res = _rows(tmp_path / "ref"), _rows(killed)
    assert [r["epoch"] for r in res] == [str(e) for e in range(6)]
    for col in ("lr", "train_loss", "train_top1", "eval_loss", "eval_top1"):
        assert [r[col] for r in ref] == [r[col] for r in res], col
    wa, wb = load_weights(tmp_path / "ref"), load_weights(killed)
    assert max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa) <= 1e-6
