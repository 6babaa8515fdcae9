"""Supernet: one random scheme per forward call, held-out split, frozen evaluator."""

import pytest
import torch

from attnkit.models import create_model
from attnkit.search import (
    ConnectionScheme,
    HoldoutEvaluator,
    SupernetWrapper,
    holdout_split,
    scheme_override,
)


def _r20(**kw):
    return create_model("resnet20", num_classes=3, in_chans=1, attn="se", sharing="stage", **kw)


def test_supernet_uses_a_different_scheme_per_batch():
    model = _r20()
    calls = []
    for si, stage in enumerate(model.stages):
        stage.attn.register_forward_hook(lambda m, i, o, si=si: calls.append(si))
    net = SupernetWrapper(model, generator=torch.Generator().manual_seed(0)).train()
    x = torch.randn(4, 1, 8, 8)
    seen = []
    for _ in range(12):
        calls.clear()
        net(x)
        s = net.last_scheme
        seen.append(s.bits)
        # the shared module runs exactly once per connected block, per stage
        assert [calls.count(i) for i in range(3)] == [sum(r) for r in s.stages]
    assert len(set(seen)) >= 10
    assert str(model.scheme) == "111|111|111"  # nothing left changed on the model
    # reproducible with the same seed
    net2 = SupernetWrapper(_r20(), generator=torch.Generator().manual_seed(0)).train()
    seen2 = []
    for _ in range(12):
        net2(x)
        seen2.append(net2.last_scheme.bits)
    assert seen2 == seen
    # eval mode: the full scheme
    net.eval()
    calls.clear()
    with torch.no_grad():
        net(x)
    assert len(calls) == 9 and net.last_scheme == ConnectionScheme.full((3, 3, 3))


def test_random_draws_are_fair_coins():
    g = torch.Generator().manual_seed(1)
    bits = torch.stack([ConnectionScheme.random((18, 18, 18), generator=g).as_tensor() for _ in range(2000)])
    assert 0.48 <= float(bits.float().mean()) <= 0.52


def test_empty_scheme_is_the_plain_backbone():
    torch.manual_seed(0)
    model = _r20().eval()
    plain = create_model("resnet20", num_classes=3, in_chans=1).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".attn." not in k})
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad(), scheme_override(model, "empty"):
        assert torch.allclose(model(x), plain(x), atol=1e-6)
    with torch.no_grad():
        assert not torch.allclose(model(x), plain(x), atol=1e-4)  # full scheme differs


def test_holdout_split_first_k_per_class():
    targets = [0, 1, 0, 2, 1, 0, 2, 2, 1, 0, 1, 2]
    tr, ho = holdout_split(targets, 2)
    assert ho == [0, 1, 2, 3, 4, 6]
    assert sorted(tr + ho) == list(range(len(targets))) and not set(tr) & set(ho)
    with pytest.raises(ValueError, match="<= 4 samples"):
        holdout_split(targets, 4)


def test_holdout_evaluator_caches_and_is_deterministic():
    model = _r20()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    ev = HoldoutEvaluator(model, [(x[:8], y[:8]), (x[8:], y[8:])])
    a = ev("101|010|111")
    assert ev(ConnectionScheme.parse("101|010|111")) == a and 0.0 <= a <= 100.0
    assert ev.num_evaluations == 1 and ev.cache_hits == 1
    ev.cache_enabled = False
    assert ev("101|010|111") == a and ev.num_evaluations == 2
    with pytest.raises(ValueError, match="blocks_per_stage"):
        ev("1|1")


def test_bn_calibration_scores_with_per_scheme_statistics_and_restores_them():
    import copy

    from attnkit.search import evaluate_top1

    torch.manual_seed(0)
    model = _r20()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    calib = [(x[:16] + 1.0, y[:16]), (x[16:] * 2.0, y[16:])]
    before = copy.deepcopy(model.state_dict())
    ev = HoldoutEvaluator(model, [(x, y)], bn_calibration=calib, bn_calibration_batches=2)
    acc = ev("100|001|010")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # manual reference: cumulative BN statistics of the two calibration batches under the scheme
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    ref.train()
    with torch.no_grad(), scheme_override(ref, "100|001|010"):
        for xb, _ in calib:
            ref(xb)
    assert acc == evaluate_top1(ref, [(x, y)], "100|001|010")[0]
    # the running statistics really differ from the supernet's
    assert not torch.allclose(ref.stem[1].running_mean, model.stem[1].running_mean)
