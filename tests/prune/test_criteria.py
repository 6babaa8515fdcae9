"""Criteria on hand-made weights, against torch-pruning's importance classes, and on ResNet-20."""

from __future__ import annotations

import math

import pytest
import torch
import torch_pruning as tp
from torch import nn

import attnkit
from attnkit.prune import compute_criteria, list_criteria, plan_layers, register_criterion
from attnkit.prune.criteria import CRITERIA


class HandMade(nn.Module):
    """stem conv → the 3-filter 1×1 conv of the spec → BN → ReLU → conv."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1, bias=False)
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.out = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -2, 3], [0, 0, 1], [2, 2, 2]]).view(3, 3, 1, 1))
            self.bn.weight.copy_(torch.tensor([-0.5, 2.0, 0.25]))

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.conv(self.stem(x)))))


def test_hand_made_weight_criteria():
    m = HandMade()
    s = compute_criteria(m, criteria=("l1", "l2", "fpgm", "bn_gamma"), example_inputs=torch.zeros(1, 3, 4, 4))
    assert list(s) == ["conv", "out"]  # every conv except the first
    c = s["conv"]
    torch.testing.assert_close(c["l1"], torch.tensor([6.0, 1.0, 6.0]))
    torch.testing.assert_close(c["l2"], torch.tensor([math.sqrt(14), 1.0, math.sqrt(12)]))
    r = 3 + 3 * math.sqrt(2)
    assert torch.allclose(c["fpgm"].double(), torch.tensor([r, 6.0, r], dtype=torch.float64), atol=1e-6)
    torch.testing.assert_close(c["bn_gamma"], torch.tensor([0.5, 2.0, 0.25]))
    assert "bn_gamma" not in s["out"]  # no BN after the last conv: skipped


def test_matches_torch_pruning_importances(small_cnn):
    plan = plan_layers(small_cnn, example_inputs=torch.zeros(1, 1, 8, 8))
    s = compute_criteria(small_cnn, criteria=("l1", "l2", "bn_gamma", "fpgm"))
    for name, layer in plan.items():
        w = layer.conv.weight.detach().flatten(1)
        mag1 = tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None)(layer.group)
        mag2 = tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer=None)(layer.group)
        bn = tp.importance.BNScaleImportance(group_reduction="first", normalizer=None)(layer.group)
        torch.testing.assert_close(s[name]["l1"], w.abs().sum(1))
        torch.testing.assert_close(s[name]["l1"], mag1)
        torch.testing.assert_close(s[name]["l2"] ** 2, mag2)
        torch.testing.assert_close(s[name]["bn_gamma"], bn)
        # FPGM: torch-pruning measures distances between |W|; equal to ours for non-negative weights
        with torch.no_grad():
            layer.conv.weight.abs_()
        ours = compute_criteria(small_cnn, criteria=("fpgm",), layers=[name])[name]["fpgm"]
        fpgm = tp.importance.FPGMImportance(p=1, group_reduction="first", normalizer=None)(layer.group)
        torch.testing.assert_close(ours, fpgm, rtol=1e-4, atol=1e-5)  # float32 cdist in tp


def test_resnet20_smoke_all_criteria_finite():
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20")
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    crit = ("l1", "l2", "fpgm", "bn_gamma", "taylor", "hrank")
    s = compute_criteria(m, [(x[:32], y[:32]), (x[32:], y[32:])], crit, num_samples=64)
    assert len(s) == 9
    for name, d in s.items():
        assert list(d) == list(crit)
        f = dict(m.named_modules())[name].out_channels
        for v in d.values():
            assert v.shape == (f,) and torch.isfinite(v).all()
        assert (d["hrank"] >= 0).all() and (d["hrank"] <= 32).all()
    assert m.training  # the model's mode is restored


def test_data_criteria_definitions(small_cnn):
    """taylor / act_mean equal their formulas on a captured activation."""
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    s = compute_criteria(small_cnn, [(x, y)], ("taylor", "act_mean"), layers=["features.3"], num_samples=16)
    a = small_cnn.features[:5](x).detach().requires_grad_(True)  # BN output of the second conv
    out = small_cnn.fc(small_cnn.features[5:](a).mean((2, 3)))
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(out, y, reduction="sum"), a)
    taylor = (a * g).mean((2, 3)).abs().mean(0)
    torch.testing.assert_close(s["features.3"]["taylor"], taylor.detach(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(s["features.3"]["act_mean"], torch.relu(a).mean((0, 2, 3)).detach())


def test_unknown_criterion_and_register():
    with pytest.raises(ValueError, match="unknown pruning criterion 'l3'.*l1"):
        compute_criteria(HandMade(), criteria=("l3",), example_inputs=torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="loader"):
        compute_criteria(HandMade(), criteria=("taylor",), example_inputs=torch.zeros(1, 3, 4, 4))
    register_criterion("neg_l1", lambda ctx: -ctx.layer.conv.weight.detach().abs().flatten(1).sum(1))
    try:
        assert "neg_l1" in list_criteria()
        s = compute_criteria(HandMade(), criteria=("neg_l1",), example_inputs=torch.zeros(1, 3, 4, 4))
        torch.testing.assert_close(s["conv"]["neg_l1"], -torch.tensor([6.0, 1.0, 6.0]))
    finally:
        CRITERIA._entries.pop("neg_l1")


def test_without_torch_pruning_the_error_names_the_extra():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch_pruning'] = None\n"
        "import torch, attnkit, attnkit.prune as P\n"
        "m = attnkit.create_model('resnet20')\n"
        "try:\n"
        "    P.materialize(m, {'stages.0.blocks.0.conv1': torch.arange(8)})\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "ERR" in out and "pip install 'attnkit[prune]'" in out
