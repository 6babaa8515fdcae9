"""Kill -9 at an atomic write of ``attnkit train --workers 2``, then ``--resume auto``: the finished run
equals the uninterrupted one (metrics rows, the summary's best and final top-1, and weights, max difference
0.0), with no temporary file left.

Each run is a forked child of the test process (no re-import, about 5 s a run on 2 cores) that SIGKILLs
itself just before or just after its N-th ``os.replace``: every atomic write of attnkit (config, env,
checkpoints, weights, summary, report) ends in one, and ``metrics.csv`` rows are appended between them,
so the kill points also cover "row written, checkpoint not yet".
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch

ARGS = (
    "train --recipe quick --train-subset 100 --epochs 2 --batch-size 25 --eval-batch-size 360 "
    "--workers 2 --progress none --scheduler step --milestones 1 --lr 0.1"
).split()
COLS = ("epoch", "global_step", "lr", "train_loss", "train_top1", "eval_loss", "eval_top1", "eval_top5")


def _run(kill, out: Path, name: str, kill_at: int = 0, when: str = "before", *extra: str) -> int:
    argv = [*ARGS, "--out-dir", str(out), "--run-name", name, *extra]

    def fn() -> int:
        from attnkit.cli import main

        return main(argv)

    return kill(fn, out / f"{name}.count", kill_at, when)


def _rows(run: Path) -> list[tuple]:
    with open(run / "metrics.csv") as f:
        return [tuple(r[c] for c in COLS) for r in csv.DictReader(f)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, killed_at_write):
    out = tmp_path_factory.mktemp("kill")
    assert _run(killed_at_write, out, "ref") == 0
    return out, int((out / "ref.count").read_text()), killed_at_write


def _check_kill(reference, name: str, kill_at: int, when: str) -> float:
    out, n_writes, kill = reference
    assert 1 <= kill_at <= n_writes
    assert _run(kill, out, name, kill_at, when) == -signal.SIGKILL
    assert _run(kill, out, name, 0, "before", "--resume", "auto") == 0
    run, ref = out / name, out / "ref"
    assert _rows(run) == _rows(ref)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, run))
    for k in ("best_eval_top1", "best_epoch", "final_eval_top1", "final_eval_top5", "final_eval_loss"):
        assert sa[k] == sb[k], k  # unrounded, also when the kill came after the last epoch
    wa, wb = _weights(ref), _weights(run)
    diff = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)
    assert diff == 0.0
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name or p.name == ".attnkit.lock"]
    return diff


# the run's 12 writes, in order: the metrics.csv header, config.yaml, env.json, the initial last.ckpt,
# best.ckpt and last.ckpt of epoch 0, of epoch 1, model.safetensors, curves.png, report.md, summary.json.
# 3 after: env written, no checkpoint; 5 before: epoch 0's row appended, its checkpoints not; 8 before:
# both rows, epoch 1's last.ckpt not
@pytest.mark.parametrize(("kill_at", "when"), [(3, "after"), (5, "before"), (8, "before")])
def test_kill_then_resume_is_exact_with_workers(reference, kill_at, when):
    _check_kill(reference, f"k{kill_at}{when}", kill_at, when)


# twelve more: every write of the run, before or after its os.replace (10 and 12 before: trained and
# weights written, but not yet the curves, the report or the summary: resuming writes them, unrounded)
TWELVE = [
    (1, "before"),
    (2, "after"),
    (3, "before"),
    (4, "before"),
    (4, "after"),
    (5, "after"),
    (6, "before"),
    (7, "after"),
    (8, "after"),
    (9, "before"),
    (10, "before"),
    (12, "before"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kill_at", "when"), TWELVE)
def test_kill_at_twelve_more_points_then_resume_is_exact_with_workers(reference, kill_at, when):
    _check_kill(reference, f"s{kill_at}{when}", kill_at, when)
