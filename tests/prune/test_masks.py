"""Masks are exact: masked == materialised, analytic parameter counts, bit-exact remove(), BN recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnkit.prune import apply_filter_masks, keep_indices, materialize, recalibrate_bn


def _keep(model, ratio=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    names = list(convs)[1:]
    return keep_indices({n: torch.rand(convs[n].out_channels, generator=g) for n in names}, ratio)


def test_masked_equals_materialised_and_param_count(small_cnn):
    keep = _keep(small_cnn)
    x = torch.randn(4, 1, 8, 8)
    dense_params = sum(p.numel() for p in small_cnn.parameters())
    pruned = materialize(small_cnn, keep, x[:1])
    with apply_filter_masks(small_cnn, keep):
        y_masked = small_cnn(x)
    torch.testing.assert_close(pruned.eval()(x), y_masked, atol=1e-5, rtol=0)
    # analytic count: conv1 16 (kept), conv2 32→16, conv3 32→16, fc 32→16 inputs
    k2, k3 = len(keep["features.3"]), len(keep["features.6"])
    expect = (
        (16 * 1 * 9 + 16) + 2 * 16 + (k2 * 16 * 9 + k2) + 2 * k2 + (k3 * k2 * 9 + k3) + 2 * k3 + 10 * k3 + 10
    )
    assert (k2, k3) == (16, 16)
    assert sum(p.numel() for p in pruned.parameters()) == expect < dense_params
    assert sum(p.numel() for p in small_cnn.parameters()) == dense_params  # original untouched


def test_remove_is_bit_exact_even_after_recalibration(small_cnn):
    before = {k: v.clone() for k, v in small_cnn.state_dict().items()}
    moms = [m.momentum for m in small_cnn.modules() if isinstance(m, nn.BatchNorm2d)]
    h = apply_filter_masks(small_cnn, _keep(small_cnn))
    recalibrate_bn(small_cnn, [torch.randn(8, 1, 8, 8) for _ in range(3)], batches=3)
    assert any(not torch.equal(before[k], v) for k, v in small_cnn.state_dict().items())
    h.remove()
    h.remove()  # idempotent
    after = small_cnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.momentum for m in small_cnn.modules() if isinstance(m, nn.BatchNorm2d)] == moms


def test_recalibrate_bn_is_a_plain_average(small_cnn):
    batches = [torch.randn(5, 1, 8, 8) for _ in range(4)]
    recalibrate_bn(small_cnn, [(b, None) for b in batches], batches=2)
    bn = small_cnn.features[1]
    acts = torch.cat([small_cnn.features[0](b) for b in batches[:2]])
    means = torch.stack([small_cnn.features[0](b).mean((0, 2, 3)) for b in batches[:2]]).mean(0)
    torch.testing.assert_close(bn.running_mean, means.detach(), atol=1e-5, rtol=0)
    assert bn.momentum == 0.1 and not small_cnn.training and acts.shape[0] == 10
    with pytest.raises(ValueError, match="batches"):
        recalibrate_bn(small_cnn, batches, batches=0)


def test_bad_keep_is_rejected(small_cnn):
    with pytest.raises(ValueError, match="keep"):
        apply_filter_masks(small_cnn, {"features.3": torch.tensor([0, 0, 1])})
    with pytest.raises(ValueError, match="no module named"):
        apply_filter_masks(small_cnn, {"nope": torch.tensor([0])})
    with pytest.raises(ValueError, match="not an nn.Conv2d"):
        materialize(small_cnn, {"features.1": torch.tensor([0])}, torch.zeros(1, 1, 8, 8))
