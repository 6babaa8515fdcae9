"""SPEM-style auxiliary losses warn when a model is trained by a loop that ignores them, never inside
attnkit's trainer, in evaluation or under no_grad."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import attnkit
from attnkit.models import aux as aux_mod
from attnkit.models import total_aux_loss
from attnkit.train import train_one_epoch


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(aux_mod, "_WARNED", set())


def _steps(model, x, with_aux: bool, n: int = 2):
    for _ in range(n):
        loss = model(x).logsumexp(1).mean()
        if with_aux:
            loss = loss + total_aux_loss(model)
        loss.backward()


def test_plain_loop_without_aux_loss_warns_once(fresh_warnings):
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", attn="spem", num_classes=4, in_chans=1)
    x = torch.randn(2, 1, 8, 8)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _steps(m, x, with_aux=True)  # the right way: no warning
        m.eval()
        m(x), m(x)  # evaluation: no warning
        m.train()
        with torch.no_grad():
            m(x), m(x)
        assert [str(r.message) for r in w] == []
        _steps(m, x, with_aux=False, n=3)
    msgs = [str(r.message) for r in w if issubclass(r.category, UserWarning)]
    assert len(msgs) == 1 and "SPEMModule" in msgs[0] and "total_aux_loss" in msgs[0]


def test_attnkit_trainer_and_plain_models_do_not_warn(fresh_warnings):
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", attn="spem", num_classes=4, in_chans=1)
    assert aux_mod.watch_aux_losses(m) == 9  # one SPEM per block, 3 stages x 3 blocks
    assert aux_mod.watch_aux_losses(attnkit.create_model("resnet20", attn="se")) == 0
    data = TensorDataset(torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,)))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = train_one_epoch(m, opt, DataLoader(data, batch_size=4), progress="none", grad_accum=2)
    assert [str(r.message) for r in w if "aux_loss" in str(r.message)] == []
    assert any(k.startswith("aux_") for k in out)
