"""Pruning attnkit backbones (with attention) and torchvision's ResNet-18; the torch-pruning pruner path."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

import attnkit
from attnkit.prune import (
    BlendedImportance,
    apply_filter_masks,
    blended_scores,
    compute_criteria,
    default_layers,
    keep_indices,
    materialize,
    select_candidates,
)


def _predicted_drop(model, keep):
    """Params and MACs removed, predicted from the kept channels of each inner conv (k×k, no bias)."""
    mods = dict(model.named_modules())
    d_params = d_macs = 0
    for name, k in keep.items():
        conv = mods[name]
        parent = mods[name.rsplit(".", 1)[0]]
        nxt = parent.conv2  # the block's next conv consumes these channels
        removed = conv.out_channels - len(k)
        per_out = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        per_in = nxt.out_channels * nxt.kernel_size[0] * nxt.kernel_size[1]
        d_params += removed * (per_out + 2 + per_in)  # conv filters, BN γ and β, next conv's inputs
        d_macs += removed * (per_out + per_in) * _hw(model, conv)
    return d_params, d_macs


_SIZES: dict = {}


def _hw(model, conv):
    return _SIZES[id(conv)]


def _record_sizes(model, x):
    hooks = [
        m.register_forward_hook(lambda m, i, o: _SIZES.__setitem__(id(m), o.shape[-1] * o.shape[-2]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    model.eval()(x)
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("attn", ["se", "eca", "dia"])
def test_attnkit_resnet20_with_attention(attn, randomize_bn):
    torch.manual_seed(0)
    model = randomize_bn(attnkit.create_model("resnet20", attn=attn)).eval()
    x = torch.randn(2, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    keep = keep_indices(
        {
            n: torch.rand(dict(model.named_modules())[n].out_channels, generator=g)
            for n in default_layers(model)
        }
    )
    assert len(keep) == 9 and all(
        len(k) == dict(model.named_modules())[n].out_channels // 2 for n, k in keep.items()
    )
    pruned = materialize(model, keep, x[:1])
    with apply_filter_masks(model, keep):
        torch.testing.assert_close(pruned.eval()(x), model(x), atol=1e-5, rtol=0)
    _record_sizes(model, x[:1])
    d_params, d_macs = _predicted_drop(model, keep)
    macs0, params0 = tp.utils.count_ops_and_params(model, x[:1])
    macs1, params1 = tp.utils.count_ops_and_params(pruned, x[:1])
    assert params0 - params1 == d_params
    assert (
        sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in pruned.parameters()) == d_params
    )
    if attn == "se":  # inner convs only: the block output (and its SE gate) keep their width
        assert pruned.stages[0].blocks[0].attn.fc1.in_channels == 16
    # conv MACs drop as predicted; BN/ReLU element counts add a little on top in tp's counter
    assert d_macs <= macs0 - macs1 <= d_macs * 1.05


def test_torch_pruning_prunes_se_convs_with_the_residual_channels():
    """torch-pruning's graph carries a pruned block-output channel into SE's 1×1 convs (in and out)."""
    torch.manual_seed(0)
    model = attnkit.create_model("resnet20", attn="se").eval()
    x = torch.randn(1, 3, 32, 32)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    group = dg.get_pruning_group(model.stem[0], tp.prune_conv_out_channels, idxs=[0, 5, 9])
    group.prune()
    se = model.stages[0].blocks[1].attn
    assert (se.fc1.in_channels, se.fc2.out_channels) == (13, 13)
    assert model(x).shape == (1, 10)


def test_torchvision_resnet18(randomize_bn):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = randomize_bn(tv.models.resnet18(num_classes=10)).eval()
    x = torch.randn(2, 3, 64, 64)
    layers = default_layers(model)
    assert layers == [f"layer{i}.{j}.conv1" for i in range(1, 5) for j in range(2)]
    s = compute_criteria(
        model, [(x, torch.tensor([1, 2]))], ("l1", "fpgm", "taylor"), num_samples=2, example_inputs=x[:1]
    )
    keep = keep_indices({n: d["l1"] for n, d in s.items()}, 0.5)
    pruned = materialize(model, keep, x[:1])
    with apply_filter_masks(model, keep, example_inputs=x[:1]):
        torch.testing.assert_close(pruned.eval()(x), model(x), atol=1e-4, rtol=1e-4)
    _record_sizes(model, x[:1])
    d_params, d_macs = _predicted_drop(model, keep)
    macs0, params0 = tp.utils.count_ops_and_params(model, x[:1])
    macs1, params1 = tp.utils.count_ops_and_params(pruned, x[:1])
    assert params0 - params1 == d_params
    assert d_macs <= macs0 - macs1 <= d_macs * 1.05


def test_blended_importance_in_a_torch_pruning_pruner(randomize_bn):
    torch.manual_seed(0)
    model = randomize_bn(attnkit.create_model("resnet20", attn="se")).eval()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    scores = compute_criteria(model, [(x, y)], ("l1", "l2", "fpgm", "bn_gamma", "taylor"), num_samples=32)
    _, cands = select_candidates(scores)
    ours = materialize(model, keep_indices(blended_scores(scores, cands)), x[:1])

    theirs = copy.deepcopy(model)
    imp = BlendedImportance(theirs, scores, cands)
    assert isinstance(imp, tp.importance.Importance)
    keep_names = set(scores)
    ignored = [
        m for n, m in theirs.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in keep_names
    ]
    pruner = tp.pruner.MetaPruner(theirs, x[:1], importance=imp, pruning_ratio=0.5, ignored_layers=ignored)
    pruner.step()
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    torch.testing.assert_close(theirs.eval()(x), ours.eval()(x), atol=1e-5, rtol=0)


def test_coupled_layer_is_rejected():
    model = attnkit.create_model("resnet20")
    with pytest.raises(ValueError, match="coupled"):
        compute_criteria(model, criteria=("l1",), layers=["stages.0.blocks.0.conv2"])
