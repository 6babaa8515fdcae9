"""timm/Fabric trainer features through the CLI: --opt/--sched/--model-ema/--mixup/--grad-accum/--logger
run, and a run interrupted after epoch 1 resumes to the same metrics, weights, EMA weights and step logs."""

from __future__ import annotations

import csv
import importlib

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("tensorboard")

from attnkit.cli import main as cli_main  # noqa: E402

fit_mod = importlib.import_module("attnkit.train.fit")  # the module (attnkit.train.fit is the function)

ARGS = [
    "train", "--recipe", "quick", "--train-subset", "192", "--test-subset", "120", "--epochs", "3",
    "--batch-size", "32", "--eval-batch-size", "120", "--workers", "0", "--progress", "none",
    "--opt", "adamw", "--lr", "0.003", "--weight-decay", "0.05", "--sched", "cosine",
    "--warmup-epochs", "1", "--model-ema", "--model-ema-decay", "0.9", "--mixup", "0.2",
    "--grad-accum", "2", "--logger", "tensorboard,csv", "--log-interval", "1",
]  # fmt: skip


class _Crash(RuntimeError):
    pass


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.slow
def test_cli_timm_features_run_and_resume_exactly(tmp_path, monkeypatch, load_weights):
    out = ["--out-dir", str(tmp_path)]
    assert cli_main(ARGS + out + ["--run-name", "ref"]) == 0

    real = fit_mod._run_epoch

    def crash_after_epoch_1(run, epoch):
        row = real(run, epoch)
        if epoch == 1:
            raise _Crash("simulated kill after epoch 1's checkpoint")
        return row

    monkeypatch.setattr(fit_mod, "_run_epoch", crash_after_epoch_1)
    monkeypatch.setenv("ATTNKIT_DEBUG", "1")  # let the exception through the CLI
    with pytest.raises(_Crash):
        cli_main(ARGS + out + ["--run-name", "part"])
    monkeypatch.setattr(fit_mod, "_run_epoch", real)
    part = tmp_path / "part"
    assert torch.load(part / "last.ckpt", weights_only=True)["epoch"] == 1
    assert not (part / "summary.json").exists()
    assert cli_main(ARGS + out + ["--run-name", "part", "--resume", "auto"]) == 0

    ref = tmp_path / "ref"
    a, b = _rows(ref / "metrics.csv"), _rows(part / "metrics.csv")
    assert [r["epoch"] for r in b] == ["0", "1", "2"]
    # 6 batches per epoch, 2 per update -> 3 optimizer updates per epoch
    assert [r["global_step"] for r in a] == ["3", "6", "9"]
    for col in ("lr", "train_loss", "train_top1", "eval_loss", "eval_top1", "ema_eval_loss", "ema_eval_top1"):
        assert [r[col] for r in a] == [r[col] for r in b], col
    # warm-up epoch at timm's warmup_lr, then cosine: the logged lr changes every epoch
    assert len({r["lr"] for r in a}) == 3
    assert _max_diff(load_weights(ref), load_weights(part)) <= 1e-6
    assert _max_diff(load_weights(ref / "ema"), load_weights(part / "ema")) <= 1e-6
    # EMA weights are not the raw weights, and both are evaluated
    assert _max_diff(load_weights(ref), load_weights(ref / "ema")) > 1e-4
    # step-level CSV log: one train_loss_step row per update, equal after the resume
    sa, sb = _rows(ref / "csv" / "metrics.csv"), _rows(part / "csv" / "metrics.csv")

    def steps(rows):
        return [(r["step"], r["train_loss_step"]) for r in rows if r.get("train_loss_step")]

    assert [s for s, _ in steps(sa)] == [str(i) for i in range(1, 10)]
    assert steps(sa) == steps(sb)
    assert any(p.name.startswith("events.out.tfevents") for p in (ref / "tb").iterdir())
    ck = torch.load(ref / "last.ckpt", weights_only=True)
    assert "model_ema" in ck and ck["scheduler"]["t_initial"] == 3  # timm CosineLRScheduler state
