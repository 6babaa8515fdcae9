"""Engine guards, checkpoints, metrics files and progress output (acceptance checks 14, 15, 18, 19)."""

from __future__ import annotations

import csv
import json
import logging
import math

import pytest
import torch

from attnkit.data import build
from attnkit.models import create_model
from attnkit.train import (
    CHECKPOINT_KEYS,
    FIXED_COLUMNS,
    CheckpointError,
    Engine,
    build_loaders,
    build_optimizer,
    build_scheduler,
    config_from_dict,
    fit,
    read_checkpoint,
    set_rng_state,
    train_one_epoch,
)


def test_precision_and_sync_bn_guards_on_cpu():
    """Check 14: 16-* precisions and sync_bn raise on CPU before Fabric is built."""
    for p in ("16-mixed", "16-true"):
        with pytest.raises(ValueError, match="bf16-mixed"):
            Engine(accelerator="cpu", precision=p)
    with pytest.raises(ValueError, match="sync_bn"):
        Engine(accelerator="cpu", sync_bn=True)
    with pytest.raises(ValueError, match="precision must be one of"):
        Engine(accelerator="cpu", precision="fp8")


def test_bf16_mixed_trains_one_step_with_finite_loss(quick_config):
    """Check 14: bf16-mixed on CPU runs a training step with a finite loss that changes the weights."""
    cfg = quick_config(precision="bf16-mixed")
    engine = Engine(accelerator="cpu", precision="bf16-mixed")
    data = build("digits", train_subset=128)
    model = create_model("resnet20", num_classes=10, in_chans=1, attn="se")
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(model, cfg)
    model, opt = engine.setup(model, opt)
    loader, _ = build_loaders(cfg, data)
    loader = engine.setup_dataloaders(loader)
    out = train_one_epoch(model, opt, loader, engine=engine, max_steps=1, progress="none")
    assert math.isfinite(out["train_loss"]) and out["global_step"] == 1
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_checkpoint_round_trip_and_run_folder(quick_config, load_weights, capsys):
    """Checks 15 and 18: weights_only load, every §4.6 key, exact restore; metrics.csv after every epoch."""
    seen_rows = []

    def after_epoch(info):
        with open(info["run_dir"] / "metrics.csv") as f:
            seen_rows.append(sum(1 for _ in f) - 1)

    cfg = quick_config(epochs=3, milestones=[1, 2])
    summary = fit(cfg, callbacks=[after_epoch])
    run = cfg.run_dir
    assert seen_rows == [1, 2, 3]
    with open(run / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert tuple(header[: len(FIXED_COLUMNS)]) == FIXED_COLUMNS
    assert not (run / "tb").exists()
    for name in ("config.yaml", "env.json", "summary.json", "report.md", "best.ckpt", "last.ckpt"):
        assert (run / name).exists(), name
    s = json.loads((run / "summary.json").read_text())
    assert {"best_eval_top1", "best_epoch", "final_eval_top1", "params", "wall_time_s"} <= set(s)
    assert s["params"] == 272_186 and s["final_eval_top1"] == summary["final_eval_top1"]
    assert s["best_eval_top1"] >= s["final_eval_top1"] - 1e-9

    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert set(CHECKPOINT_KEYS) <= set(ckpt) and ckpt["epoch"] == 2 and ckpt["metric_name"] == "eval_top1"
    # the checkpoint's weights are the final weights
    final = load_weights(run)
    assert all(torch.equal(final[k], v) for k, v in ckpt["model"].items())
    # restore into fresh objects
    c2 = config_from_dict(ckpt["config"])
    model = create_model("resnet20", num_classes=10, in_chans=1)
    opt = build_optimizer(model, c2)
    sched = build_scheduler(opt, c2, steps_per_epoch=7)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    assert sched.last_epoch == 3 and opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.01)
    bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    saved = ckpt["optimizer"]["state"]
    assert all(torch.equal(b, saved[i]["momentum_buffer"]) for i, b in enumerate(bufs))
    assert any(b.abs().sum() > 0 for b in bufs)
    set_rng_state(ckpt["rng"])
    assert torch.equal(torch.get_rng_state(), ckpt["rng"]["torch"])
    # `attnkit eval --checkpoint` rebuilds model and data from the checkpoint and agrees with the run
    from attnkit.cli import main as cli_main

    assert cli_main(["eval", "--checkpoint", str(run / "last.ckpt")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["count"] == 360 and res["epoch"] == 2
    assert res["top1"] == pytest.approx(summary["final_eval_top1"], abs=1e-6)
    assert res["loss"] == pytest.approx(summary["final_eval_loss"], rel=1e-4)


def test_corrupt_or_mismatched_checkpoint_gives_clear_error(quick_config, tmp_path):
    cfg = quick_config(epochs=1)
    fit(cfg)
    last = cfg.run_dir / "last.ckpt"
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(last.read_bytes()[:1000])  # truncated file
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="cannot be read"):
        fit(quick_config(run_name="other", resume=str(bad)))
    with pytest.raises(CheckpointError, match="different model.*attn"):
        fit(quick_config(epochs=2, attn="se", resume="auto"))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        fit(quick_config(run_name="x", resume=str(tmp_path / "missing.ckpt")))
    with pytest.raises(FileExistsError, match="--resume auto"):
        fit(quick_config(epochs=2))


def test_no_tqdm_bar_off_tty_progress_as_log_lines(quick_config, monkeypatch, caplog):
    """Check 19: stderr is not a TTY under pytest -> no tqdm bar, log lines instead."""
    import tqdm.auto

    def boom(*a, **k):
        raise AssertionError("a tqdm bar was created off-TTY")

    monkeypatch.setattr(tqdm.auto, "tqdm", boom)
    with caplog.at_level(logging.INFO, logger="attnkit"):
        fit(quick_config(epochs=1, progress="auto", log_interval=2))
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("epoch 0 step 2/") for m in msgs)
    assert any(m.startswith("epoch 0/0 lr") for m in msgs)


def test_eval_reparam_evaluates_the_fused_model(quick_config):
    """eval_reparam=True evaluates attnkit.reparam.reparameterize_model(model) (ASR folded away); the fused
    model must score like the raw model that `attnkit eval` rebuilds from the same checkpoint."""
    from attnkit.commands.eval import evaluate_checkpoint

    cfg = quick_config(epochs=1, train_subset=128, attn="asr", eval_reparam=True)
    s = fit(cfg)
    raw = evaluate_checkpoint(str(cfg.run_dir / "last.ckpt"))
    fused = evaluate_checkpoint(str(cfg.run_dir / "last.ckpt"), reparam=True)
    assert raw["count"] == fused["count"] == 360
    assert s["final_eval_loss"] == pytest.approx(raw["loss"], rel=1e-4, abs=1e-5)
    assert fused["loss"] == pytest.approx(raw["loss"], rel=1e-4, abs=1e-5)
