"""Unit checks of the timm/Fabric trainer features: flags and validation, gradient accumulation, timm
schedules, mixup batches, user loaders, the Hugging Face adapter and the loggers."""

from __future__ import annotations

import argparse
import math
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnkit.train import (
    TrainConfig,
    add_config_arguments,
    build_loggers,
    build_scheduler,
    fit,
    parse_loggers,
    train_one_epoch,
    updates_per_epoch,
)
from attnkit.train.flags import HELP


def _parser():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return p


def test_every_flag_has_help_and_closed_sets_are_choices(capsys):
    missing = [f for f in TrainConfig.__dataclass_fields__ if not HELP.get(f)]
    assert missing == []
    p = _parser()
    text = p.format_help()
    assert "{cosine,tanh,step,multistep,plateau,poly,rsqrt,constant,none}" in text
    assert "{batch,pair,elem}" in text and "csv,tensorboard,wandb" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--sched", "bogus"])
    assert "invalid choice" in capsys.readouterr().err
    assert p.parse_args(["--sched", "none"]).sched == "none"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(sched="linear"), "sched must be one of"),
        (dict(mixup=-0.1), "mixup must be"),
        (dict(cutmix=float("nan")), "cutmix must be"),
        (dict(mixup_prob=1.5), "mixup_prob"),
        (dict(mixup_mode="row"), "mixup_mode"),
        (dict(grad_accum=0), "grad_accum must be an integer >= 1"),
        (dict(grad_accum=2, optim_strategy="mirror"), "Mirror Gradient"),
        (dict(mixup=0.2, batch_size=33), "even batch per process"),
        (dict(logger="csv,mlflow"), "logger must be a comma-separated subset"),
        (dict(model_ema_decay=1.0), "model_ema_decay"),
        (dict(min_lr=-1.0), "min_lr"),
    ],
)
def test_feature_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_unknown_timm_optimizer_is_refused():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="not a timm optimizer"):
        TrainConfig(opt="adamq")
    assert TrainConfig(opt="adamw").opt == "adamw"


def test_parse_loggers():
    assert parse_loggers("tensorboard, csv") == ["tensorboard", "csv"]
    assert parse_loggers(None, tensorboard=True) == ["tensorboard"]
    assert parse_loggers("none") == []


def _linear_run(batch: int, accum: int, n: int = 40):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 2, 2, generator=g), torch.randint(0, 4, (n,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch)
    out = train_one_epoch(model, opt, loader, grad_accum=accum, progress="none")
    return model, out


def test_grad_accumulation_equals_the_large_batch():
    """No BN: 2 micro-batches of 8 per update == batches of 16; the shorter last window (40 = 2*16 + 8)
    averages its own single batch, like the large-batch run's last batch of 8."""
    big, out_big = _linear_run(16, 1)
    acc, out_acc = _linear_run(8, 2)
    assert out_big["global_step"] == out_acc["global_step"] == 3 == updates_per_epoch(5, 2)
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert out_acc["train_loss"] == pytest.approx(out_big["train_loss"], rel=1e-6)
    assert out_acc["samples"] == 40


def test_timm_schedules_per_epoch_and_per_update():
    pytest.importorskip("timm")
    p = nn.Parameter(torch.zeros(1))
    cfg = TrainConfig(sched="cosine", epochs=4, lr=0.1, min_lr=0.0, milestones=[])
    opt = torch.optim.SGD([p], lr=0.1)
    s = build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for e in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        s.step(e + 1)
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    cfg = TrainConfig(sched="cosine", sched_on_updates=True, epochs=2, lr=0.1, milestones=[])
    opt = torch.optim.SGD([p], lr=0.1)
    s = build_scheduler(opt, cfg, steps_per_epoch=5)
    s.step_update(num_updates=5)  # half-way through the 10 updates
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    s.step(1)  # the per-epoch call is a no-op on the update clock
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_mixup_odd_last_batch_and_soft_target_loss():
    timm_data = pytest.importorskip("timm.data")
    from attnkit.train import build_mixup

    cfg = TrainConfig(mixup=0.4, cutmix=1.0, batch_size=8, label_smoothing=0.1)
    fn, crit = build_mixup(cfg, num_classes=4)
    assert isinstance(fn, timm_data.Mixup) and fn.label_smoothing == 0.1
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(13, 3, 4, 4, generator=g), torch.randint(0, 4, (13,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train_one_epoch(
        model,
        opt,
        DataLoader(TensorDataset(x, y), batch_size=8),
        mixup_fn=fn,
        criterion=crit,
        progress="none",
    )
    assert out["samples"] == 8 + 4  # the odd last batch of 5 lost one image
    assert 0.0 <= out["train_top1"] <= 100.0 and math.isfinite(out["train_loss"])


@pytest.mark.slow
def test_fit_on_user_loaders_with_val_selection(tmp_path, load_weights):
    from attnkit.data import build

    data = build("digits", train_subset=64)
    train = DataLoader(data.train, batch_size=32, shuffle=True)
    val = DataLoader(torch.utils.data.Subset(data.test, range(0, 360, 3)), batch_size=120)
    cfg = TrainConfig(
        model="resnet20", num_classes=10, epochs=2, lr=0.05, milestones=[], out_dir=str(tmp_path),
        run_name="u", progress="none", eval_every=1, workers=0,
    )  # fmt: skip
    s = fit(cfg, train_loader=train, val_loader=val)
    assert s["best_val_top1"] is not None and s["final_eval_top1"] is None and s["best_epoch"] in (0, 1)
    rows = (tmp_path / "u" / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith("val_loss,val_top1") and len(rows) == 3
    assert load_weights(tmp_path / "u")  # final weights written
    with pytest.raises(ValueError, match="needs train_loader"):
        fit(cfg, val_loader=val)


@pytest.mark.slow
def test_hf_datasets_adapter_trains(tmp_path):
    datasets = pytest.importorskip("datasets")
    import numpy as np

    from attnkit.train import HFImageDataset

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(24)]
    feats = datasets.Features(
        {"img": datasets.Array3D((8, 8, 3), "uint8"), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    ds = datasets.Dataset.from_dict({"img": imgs, "label": [i % 3 for i in range(24)]}, features=feats)
    tds = HFImageDataset(ds, image_key="img")
    x, y = tds[4]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert y == 1 and tds.classes == ["a", "b", "c"]
    torch.testing.assert_close(x, torch.from_numpy(imgs[4]).permute(2, 0, 1).float() / 255)
    with pytest.raises(KeyError, match="not in the dataset's columns"):
        HFImageDataset(ds, image_key="image")
    cfg = TrainConfig(model="resnet20", epochs=1, out_dir=str(tmp_path), run_name="hf", progress="none")
    s = fit(cfg, train_loader=DataLoader(tds, batch_size=8), test_loader=DataLoader(tds, batch_size=24))
    assert s["final_eval_top1"] is not None and s["params"] > 0  # 3 classes from the ClassLabel


def test_missing_logger_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"attnkit\[wandb\]"):
        build_loggers(TrainConfig(logger="wandb", out_dir=str(tmp_path)))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"attnkit\[tensorboard\]"):
        build_loggers(TrainConfig(logger="csv,tensorboard", out_dir=str(tmp_path)))


@pytest.mark.slow
def test_wandb_offline_logger_writes_a_local_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    (lg,) = build_loggers(TrainConfig(logger="wandb", out_dir=str(tmp_path), run_name="w"))
    lg.log_metrics({"train_loss_step": 1.5, "lr": 0.1}, step=1)
    lg.finalize("success")
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


@pytest.mark.slow
def test_ddp_grad_accumulation_matches_one_process_large_batch(quick_config, load_weights):
    """2 processes x 16 images x 2 accumulated batches per update (Fabric's no_backward_sync on the first)
    == 1 process with batches of 64: the same 64 images per update (TrainSampler deals the same
    permutation), BN-free model; equal up to fp32 summation order."""
    from test_train_ddp import tiny_cnn

    kw = dict(epochs=1, train_subset=512, augment=False, accelerator="cpu", milestones=[])
    one = quick_config(run_name="one", batch_size=64, **kw)
    fit(one, model_fn=tiny_cnn)
    acc = quick_config(run_name="acc", batch_size=32, grad_accum=2, devices=2, strategy="ddp_spawn", **kw)
    fit(acc, model_fn=tiny_cnn)
    w1, w2 = load_weights(one.run_dir), load_weights(acc.run_dir)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    rows = [(one.run_dir / "metrics.csv").read_text(), (acc.run_dir / "metrics.csv").read_text()]
    steps = [r.splitlines()[1].split(",")[1] for r in rows]
    assert steps == ["8", "8"]  # 512 / 64 updates either way
