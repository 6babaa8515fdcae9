"""Kill -9 at every atomic write of the DDPM trainer (``train_diffusion``), then ``resume="auto"``: the finished
run equals the uninterrupted one (weights, EMA weights and metrics rows exactly), with no temporary file left.

Each run is a forked child of the test process that SIGKILLs itself just before or just after its N-th
``os.replace``. The trainer's six atomic writes are ``config.json``, the header of ``metrics.csv``,
``checkpoints/last.pt`` (at steps 4 and 8), ``samples.png`` and ``summary.json``; the other ``metrics.csv`` rows
are appended between them, so "rows written, checkpoint not yet" is covered as well.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers", reason="the diffusion trainer needs attnkit[diffusion]")

COLS = ("epoch", "global_step", "lr", "train_loss", "grad_norm", "param_norm", "feature_norm")


def _run(kill, base, out: Path, name: str, kill_at: int = 0, when: str = "before", **extra) -> int:
    cfg = dict(base, out_dir=str(out), run_name=name, **extra)

    def fn() -> int:
        from attnkit.diffusion.train import train_diffusion

        torch.set_num_threads(1)
        train_diffusion(cfg)
        return 0

    return kill(fn, out / f"{name}.count", kill_at, when)


def _rows(run: Path) -> list[tuple]:
    with open(run / "metrics.csv") as f:
        return [tuple(r[c] for c in COLS) for r in csv.DictReader(f)]


def _state(run: Path) -> dict[str, torch.Tensor]:
    from attnkit.diffusion.train import load_diffusion_checkpoint

    ck = load_diffusion_checkpoint(run / "checkpoints" / "last.pt")
    return {
        **{f"model.{k}": v for k, v in ck["model"].items()},
        **{f"ema.{k}": v for k, v in ck["ema"].items()},
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, killed_at_write, tiny_diffusion_cfg):
    out = tmp_path_factory.mktemp("kill_diffusion")
    assert _run(killed_at_write, tiny_diffusion_cfg, out, "ref") == 0
    return out, int((out / "ref.count").read_text()), killed_at_write, tiny_diffusion_cfg


def test_the_reference_run_makes_six_atomic_writes(reference):
    out, n_writes, _, _ = reference
    # config.json, the metrics.csv header, last.pt at steps 4 and 8, samples.png, summary.json
    assert n_writes == 6
    assert [r[1] for r in _rows(out / "ref")] == ["2", "4", "6", "8"]


# 1 after: config only; 2 after: the metrics header, no row; 3 before: rows to step 4, no checkpoint; 3 after:
# the step-4 checkpoint; 4 before: rows to step 8 but the step-4 checkpoint (resume truncates the rows);
# 5 after: the final checkpoint and grid, no summary
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "when"),
    [(1, "after"), (2, "after"), (3, "before"), (3, "after"), (4, "before"), (5, "after")],
)
def test_kill_at_a_write_then_resume_is_exact(reference, kill_at, when):
    out, n_writes, kill, base = reference
    assert 1 <= kill_at <= n_writes
    name = f"k{kill_at}{when}"
    assert _run(kill, base, out, name, kill_at, when) == -signal.SIGKILL
    assert _run(kill, base, out, name, resume="auto") == 0
    run, ref = out / name, out / "ref"
    assert _rows(run) == _rows(ref)
    a, b = _state(ref), _state(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (run / "samples.png").stat().st_size > 0 and (run / "summary.json").is_file()
    left = [p.name for p in run.rglob("*") if ".tmp" in p.name]
    assert not left, left
