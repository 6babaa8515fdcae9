"""attnkit's trainer with a training strategy: closure path, pass counts, checkpointed counters."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from attnkit.optim import AlterSGD, MirrorGradient
from attnkit.train import TrainConfig, fit
from attnkit.train.loop import train_one_epoch


class _Crash(RuntimeError):
    pass


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="resnet20",
        dataset="digits",
        train_subset=192,
        epochs=3,
        batch_size=64,
        eval_batch_size=360,
        scheduler="step",
        milestones=[1],
        lr=0.05,
        workers=0,
        out_dir=str(tmp_path),
        run_name="run",
        progress="lines",
        log_interval=1000,
    )
    base.update(kw)
    return TrainConfig(**base)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("beta", [1, 3])
def test_train_one_epoch_costs_one_plus_one_over_beta_passes(beta):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    loader = [(torch.randn(8, 1, 4, 4), torch.randint(4, (8,))) for _ in range(7)]
    opt = MirrorGradient(torch.optim.SGD(model.parameters(), lr=0.1), beta=beta)
    out = train_one_epoch(model, opt, loader, progress="none")
    assert len(calls) == 7 + -(-7 // beta)
    assert out["samples"] == 56 and out["global_step"] == 7
    calls.clear()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, base, loader, progress="none")
    assert len(calls) == 7


def test_config_builds_the_wrapper(tmp_path):
    from attnkit.train.schedule import build_optimizer

    model = nn.Linear(3, 2)
    mg = build_optimizer(model, _config(tmp_path, optim_strategy="mirror", mg_alpha2=0.3, mg_beta=2))
    assert isinstance(mg, MirrorGradient) and (mg.alpha2, mg.beta, mg.mode) == (0.3, 2, "optimizer")
    alt = build_optimizer(model, _config(tmp_path, optim_strategy="altersgd", alter_start=0.5))
    assert isinstance(alt, AlterSGD) and alt.start == 0.5 and alt.mode == "sgd"
    assert isinstance(build_optimizer(model, _config(tmp_path)), torch.optim.SGD)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["mirror", "altersgd"])
def test_resume_with_strategy_matches_uninterrupted(tmp_path, strategy):
    kw = dict(optim_strategy=strategy, mg_beta=2, alter_start=0.5)
    full = _config(tmp_path, run_name="full", **kw)
    fit(full)

    def crash_after_epoch_1(info):
        if info["epoch"] == 1:
            raise _Crash("simulated interruption")

    part = _config(tmp_path, run_name="part", **kw)
    with pytest.raises(_Crash):
        fit(part, callbacks=[crash_after_epoch_1])
    fit(_config(tmp_path, run_name="part", resume="auto", **kw))
    a, b = _rows(full.run_dir), _rows(part.run_dir)
    assert len(a) == len(b) == 3
    for key in ("train_loss", "eval_top1", "eval_loss", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b]
    ckpt = torch.load(part.run_dir / "last.ckpt", weights_only=True)
    counters = ckpt["optimizer"]["wrapper"]  # the wrapper's counters travel in the checkpoint
    if strategy == "mirror":
        assert counters["step"] == 9 and counters["mirror_steps"] == 6  # 3 batches/epoch, batch_idx 0 and 2
    else:
        assert counters["t"] == 9 and counters["t_start"] == 5 and counters["ascents"] == 2
