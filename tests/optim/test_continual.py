"""The continual-learning protocol used for AlterSGD: the E2 CNN, class splits, one digits session."""

from __future__ import annotations

import pytest
import torch

from attnkit.optim import AlterSGD
from attnkit.optim.continual import ContinualCNN, session_accuracy, split_classes, train_session


def test_cnn_parameter_count_and_shapes():
    model = ContinualCNN(1, 10, 28)
    assert sum(p.numel() for p in model.parameters()) == 105_866
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert ContinualCNN(1, 10, 8)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(ValueError, match="img_size"):
        ContinualCNN(1, 10, 30)


def test_split_classes():
    assert split_classes(10, 5) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    with pytest.raises(ValueError, match="sessions"):
        split_classes(10, 3)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["task", "class"])
def test_altersgd_learns_one_digits_session(protocol):
    from attnkit.data import build

    b = build("digits", augment=False)
    mean, std = b.mean[0], b.std[0]
    xtr, ytr = (b.train.images - mean) / std, b.train.labels
    xte, yte = (b.test.images - mean) / std, b.test.labels
    groups = split_classes(10, 5)
    session = 1  # classes 2 and 3
    tr, te = torch.isin(ytr, torch.tensor(groups[session])), torch.isin(yte, torch.tensor(groups[session]))
    torch.manual_seed(0)
    model = ContinualCNN(1, 10, 8)
    opt = AlterSGD(torch.optim.SGD(model.parameters(), lr=0.05), start=0.7)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    g = torch.Generator().manual_seed(0)
    train_session(
        model, opt, xtr[tr], ytr[tr], session, groups, protocol, steps=200, batch_size=32, generator=g
    )
    assert len(calls) == 200  # one pass per step: no extra cost
    assert opt.state_dict()["wrapper"]["ascents"] == 30  # phase B: steps 140..199, half of them ascents
    calls.clear()
    acc = session_accuracy(model, xte[te], yte[te], session, groups, protocol, seen_sessions=session + 1)
    assert acc >= 90.0, acc
