"""IEBN (arXiv 1908.04008) and the IE gate form: counts, placement, BN equivalence."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    IEBN2d,
)
from attnkit.attention.lsas import lsas_official_scheme

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("iebn", {}, 1_751_508),
        ("ie", {}, 1_743_412),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("iebn", {}, 1_728_378),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


def test_iebn_placement_in_resnet164():
    m = create_model("resnet164", num_classes=100, attn="iebn")
    assert sum(isinstance(x, IEBN2d) for x in m.modules()) == 163
    plain_bn = [n for n, x in m.named_modules() if type(x) is nn.BatchNorm2d]
    assert len(plain_bn) == 3 and all("downsample" in n for n in plain_bn)
    pre = create_model("preresnet164", num_classes=100, attn="iebn")  # every BN, the final one included
    assert sum(isinstance(x, IEBN2d) for x in pre.modules()) == 163 and isinstance(pre.final_norm[0], IEBN2d)
    assert not any(type(x) is nn.BatchNorm2d for x in pre.modules())
    with pytest.raises(ValueError, match="norm layer"):
        create_model("resnet164", attn="iebn", sharing="stage")
    with pytest.raises(ValueError, match="norm layer"):
        create_model("resnet20", attn="iebn", scheme="111|111|111")


def test_iebn_initial_scale_and_bn_equivalence():
    torch.manual_seed(0)
    x = torch.randn(8, 16, 5, 5) * 3 + 1
    layer = IEBN2d(16)
    a = SIG(torch.tensor(-1.0))
    torch.testing.assert_close(layer(x), F.batch_norm(x, None, None, training=True) * a, atol=1e-6, rtol=0)
    assert abs(a.item() - 0.2689414) < 1e-7
    fresh = IEBN2d(16).eval()
    torch.testing.assert_close(fresh(x), x / math.sqrt(1 + 1e-5) * 0.2689414, atol=1e-6, rtol=1e-6)
    # gate_bias = 30 -> a == 1: exactly a BatchNorm
    ie, bn = IEBN2d(16), nn.BatchNorm2d(16)
    with torch.no_grad():
        ie.gate_bias.fill_(30.0)
        for p in (ie.weight, ie.bias):
            p.normal_()
        bn.weight.copy_(ie.weight)
        bn.bias.copy_(ie.bias)
    torch.testing.assert_close(ie(x), bn(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(ie.running_mean, bn.running_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(ie.running_var, bn.running_var, atol=1e-6, rtol=0)
    ie.eval()
    bn.eval()
    torch.testing.assert_close(ie(x), bn(x), atol=1e-5, rtol=0)


def test_iebn_running_stats_flags_and_batch_independence():
    torch.manual_seed(0)
    ie, bn = IEBN2d(8, momentum=None), nn.BatchNorm2d(8, momentum=None)
    for _ in range(3):
        x = torch.randn(4, 8, 3, 3) * 2 + 0.5
        ie(x)
        bn(x)
    assert ie.num_batches_tracked.item() == 3
    torch.testing.assert_close(ie.running_mean, bn.running_mean)
    torch.testing.assert_close(ie.running_var, bn.running_var)
    no_track = IEBN2d(8, track_running_stats=False)
    assert no_track.running_mean is None and no_track.eval()(torch.randn(4, 8, 3, 3)).shape == (4, 8, 3, 3)
    ie.eval()
    x = torch.randn(4, 8, 3, 3)
    x2 = x.clone()
    x2[3] = torch.randn(8, 3, 3) * 10
    torch.testing.assert_close(ie(x)[:3], ie(x2)[:3])
    # no saddle: the gate weight gets a gradient at step 0
    layer = IEBN2d(8)
    (layer(torch.randn(4, 8, 3, 3) + 1) * torch.randn(4, 8, 3, 3)).sum().backward()
    assert layer.gate_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.randn(4, 8, 3))


def test_iebn_batchnorm_interop():
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.normal_()
        bn.running_mean.normal_()
    layer = IEBN2d(8)
    missing, unexpected = layer.load_state_dict(bn.state_dict(), strict=False)
    assert sorted(missing) == ["gate_bias", "gate_weight"] and not unexpected
    conv = IEBN2d.from_batchnorm(bn)
    torch.testing.assert_close(conv.weight, bn.weight)
    torch.testing.assert_close(conv.running_mean, bn.running_mean)
    assert sorted(layer.state_dict()) == sorted(
        ["weight", "bias", "gate_weight", "gate_bias", "running_mean", "running_var", "num_batches_tracked"]
    )
    seq = nn.Sequential(IEBN2d(8), nn.BatchNorm2d(8))
    conv_seq = nn.SyncBatchNorm.convert_sync_batchnorm(seq)
    assert isinstance(conv_seq[0], IEBN2d)  # not a _BatchNorm: SyncBN conversion leaves it alone
    from attnkit.attention import convert_to_iebn

    net = nn.Sequential()
    net.add_module("bn", nn.BatchNorm2d(4))
    net.add_module("downsample", nn.Sequential(nn.BatchNorm2d(4)))
    convert_to_iebn(net)
    assert isinstance(net.bn, IEBN2d) and type(net.downsample[0]) is nn.BatchNorm2d
