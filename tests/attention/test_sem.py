"""SEM (arXiv 2209.05680): counts, reference formula, switch, official state dict."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    SEMModule,
    SEModule,
)
from attnkit.attention.lsas import lsas_official_scheme
from attnkit.attention.sem import sem_state_dict_from_official

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("sem", {}, 1_970_104),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("sem", {}, 1_946_974),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


def _sem_reference(m: SEMModule, x):
    n, c = x.shape[:2]
    s = x.mean((2, 3))
    w = SIG(s @ m.decision.weight.t() + m.decision.bias)
    e1 = F.linear(
        F.relu(F.linear(s, m.se.fc1.weight.flatten(1), m.se.fc1.bias)),
        m.se.fc2.weight.flatten(1),
        m.se.fc2.bias,
    )
    e2 = F.conv1d(s.unsqueeze(1), m.eca.conv.weight, padding=m.eca_k // 2).squeeze(1)
    e3 = m.ie.gate_weight * s + m.ie.gate_bias
    return (SIG(w[:, :1] * e1) * SIG(w[:, 1:2] * e2) * SIG(w[:, 2:3] * e3)).view(n, c, 1, 1)


def test_sem_reference_init_and_switch():
    torch.manual_seed(0)
    for c in (16, 64, 256):
        m = SEMModule(c, rd_divisor=1)
        with torch.no_grad():
            m.ie.gate_weight.normal_()
            m.ie.gate_bias.normal_()
        for n in (1, 4):
            x = torch.randn(n, c, 5, 5)
            torch.testing.assert_close(m.attention(x), _sem_reference(m, x), atol=1e-6, rtol=0)
    for c in (64, 128, 256):
        g = SEMModule(c, rd_divisor=1).attention(torch.randn(8, c, 8, 8)).mean().item()
        assert 0.085 < g < 0.105
    m = SEMModule(64, rd_divisor=1)
    x = torch.randn(4, 64, 5, 5)
    with torch.no_grad():
        m.decision.bias[1] = -1e4  # ECA's decision weight -> 0: its factor is exactly 0.5
        ref = SEMModule(64, rd_divisor=1, operators=("se", "ie"))
        ref.se.load_state_dict(m.se.state_dict())
        ref.ie.gate_weight.copy_(m.ie.gate_weight)
        ref.ie.gate_bias.copy_(m.ie.gate_bias)
        ref.decision.weight.copy_(m.decision.weight[[0, 2]])
        ref.decision.bias.copy_(m.decision.bias[[0, 2]])
    torch.testing.assert_close(m.attention(x), 0.5 * ref.attention(x), atol=1e-6, rtol=0)
    only_se = SEMModule(64, rd_divisor=1, operators=("se",))
    se = SEModule(64, rd_divisor=1)
    with torch.no_grad():
        only_se.decision.weight.zero_()
        only_se.decision.bias.fill_(1e4)
        only_se.se.load_state_dict(se.state_dict())
    torch.testing.assert_close(only_se(x), se(x), atol=1e-6, rtol=0)
    for bad in (
        {"operators": ()},
        {"operators": ("se", "se")},
        {"operators": ("mlp",)},
        {"gate_mode": "max"},
    ):
        with pytest.raises(ValueError):
            SEMModule(64, **bad)
    model = create_model("resnet164", num_classes=100, attn="sem")
    blk_attn = model.stages[2].blocks[5].attn
    assert torch.all(blk_attn.ie.gate_weight == 0) and torch.all(blk_attn.ie.gate_bias == -1)
    bound = 1 / math.sqrt(256)
    assert blk_attn.se.fc1.weight.abs().max() <= bound
    sd = {
        "switch_fc.weight": m.decision.weight,
        "switch_fc.bias": m.decision.bias,
        "fc1.weight": m.se.fc1.weight.flatten(1),
        "fc1.bias": m.se.fc1.bias,
        "fc2.weight": m.se.fc2.weight.flatten(1),
        "fc2.bias": m.se.fc2.bias,
        "conv.weight": m.eca.conv.weight,
        "w1": m.ie.gate_weight.view(1, 64, 1, 1),
        "b1": m.ie.gate_bias.view(1, 64, 1, 1),
    }
    m2 = SEMModule(64, rd_divisor=1)
    m2.load_state_dict(sem_state_dict_from_official(sd))
    torch.testing.assert_close(m2.attention(x), m.attention(x))
