"""Wrapper contract: shared param_groups, schedulers, state_dict round trips, wrap_optimizer, clipping."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnkit.optim import AlterSGD, MirrorGradient, list_strategies, wrap_optimizer


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1))


def _batches(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)) for _ in range(n)]


def _closure(model, x, y):
    def closure():
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


def _wrap(kind, model):
    base = torch.optim.Adam(model.parameters(), lr=1e-2)
    if kind == "mirror":
        return MirrorGradient(base, alpha2=0.3, beta=3)
    opt = AlterSGD(base, start=0.5)
    opt.session_start(12)
    return opt


@pytest.mark.parametrize("kind", ["mirror", "altersgd"])
def test_step_lr_halves_the_base_lr(kind):
    model = _model()
    opt = _wrap(kind, model)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    assert opt.param_groups is opt.base.param_groups
    opt.step(_closure(model, *_batches(1)[0]))
    sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(5e-3)
    sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(2.5e-3)


@pytest.mark.parametrize("kind", ["mirror", "altersgd"])
def test_state_dict_round_trip_is_bit_identical(kind):
    batches = _batches(12)

    def run(model, opt, sched, part):
        for i in part:
            torch.manual_seed(100 + i)  # dropout masks depend only on the step
            opt.step(_closure(model, *batches[i]))
            sched.step()

    model_a = _model()
    opt_a = _wrap(kind, model_a)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, 4, 0.5)
    run(model_a, opt_a, sched_a, range(12))

    model_b = _model()
    opt_b = _wrap(kind, model_b)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, 4, 0.5)
    run(model_b, opt_b, sched_b, range(6))
    ckpt = copy.deepcopy(
        {"model": model_b.state_dict(), "opt": opt_b.state_dict(), "sched": sched_b.state_dict()}
    )
    assert set(ckpt["opt"]) == {"base", "wrapper"}

    model_c = _model(seed=5)
    opt_c = _wrap(kind, model_c)
    sched_c = torch.optim.lr_scheduler.StepLR(opt_c, 4, 0.5)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["opt"])
    sched_c.load_state_dict(ckpt["sched"])
    assert opt_c.state_dict()["wrapper"] == opt_b.state_dict()["wrapper"]
    assert opt_c.param_groups is opt_c.base.param_groups
    run(model_c, opt_c, sched_c, range(6, 12))
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        assert torch.equal(pa, pc)


def test_load_bare_optimizer_state_raises():
    model = _model()
    opt = _wrap("mirror", model)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict(opt.base.state_dict())


def test_wrap_optimizer_registry():
    model = _model()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    assert wrap_optimizer(base, None) is base
    assert wrap_optimizer(base, "none") is base
    mg = wrap_optimizer(base, "mirror", alpha2=0.2)
    assert isinstance(mg, MirrorGradient) and mg.alpha2 == 0.2 and mg.requires_closure
    assert isinstance(wrap_optimizer(base, "mg"), MirrorGradient)
    assert isinstance(wrap_optimizer(base, "altersgd", start=0.5), AlterSGD)
    assert list_strategies() == ["altersgd", "mirror"]
    with pytest.raises(ValueError, match="strategy.*altersgd, mirror"):
        wrap_optimizer(base, "sam")
    with pytest.raises(ValueError, match="strategy"):
        wrap_optimizer(base, None, alpha2=0.1)


def test_clipping_inside_closure_covers_both_sub_steps():
    w = torch.zeros(3, requires_grad=True)
    opt = MirrorGradient(torch.optim.SGD([w], lr=1.0), alpha1=1.0, alpha2=0.5, beta=1, mode="sgd")
    norms = []

    def closure():
        loss = (w * torch.tensor([30.0, 40.0, 0.0])).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w], 1.0)
        norms.append(float(w.grad.norm()))
        return loss

    opt.step(closure)
    assert norms == pytest.approx([1.0, 1.0])
    assert torch.allclose(w.detach(), torch.tensor([-0.3, -0.4, 0.0]))


def test_zero_grad_and_add_param_group_delegate():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = MirrorGradient(torch.optim.SGD([a], lr=0.1))
    (a.sum() + b.sum()).backward()
    opt.add_param_group({"params": [b]})
    assert len(opt.base.param_groups) == 2
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    assert "MirrorGradient(alpha1=1.0" in repr(opt)
