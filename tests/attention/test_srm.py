"""SRM (arXiv 1903.10829): counts, guard, initial gate."""

import pytest
import torch

from attnkit import create_attn, create_model


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn,classes,expected",
    [
        ("srm", 100, 1_759_540),
        ("srm", 10, 1_736_410),
    ],
)
def test_optional_baseline_counts(attn, classes, expected):
    assert n_params(create_model("resnet164", num_classes=classes, attn=attn)) == expected


def test_srm_guard_and_initial_gate():
    m = create_attn("srm", 8).train()
    with pytest.raises(ValueError, match="H·W > 1"):
        m(torch.randn(2, 8, 1, 1))
    m = create_attn("srm", 64).train()
    cap = {}
    m.gate.register_forward_hook(lambda mod, i, o: cap.setdefault("g", o))
    m(torch.randn(4, 64, 8, 8))
    assert torch.all(cap["g"] == 0.5)
