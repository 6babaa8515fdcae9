"""reparameterize_model / fold_batchnorm: deploy form, plain checkpoints, training state untouched, export."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import attnkit
from attnkit.attention.asr import asr_norm_layer
from attnkit.reparam import find_fusable_pairs, fold_batchnorm, reparameterize_model


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _warm(m: nn.Module, hw: int = 32) -> nn.Module:
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(4, 3, hw, hw))
    return m.eval()


def test_resnet164_deploys_to_the_plain_checkpoint():
    asr = _warm(attnkit.create_model("resnet164", num_classes=100, attn="asr"))
    d = reparameterize_model(asr)
    assert n_params(d) == 1_727_284
    attnkit.create_model("resnet164", num_classes=100).load_state_dict(d.state_dict(), strict=True)
    assert n_params(fold_batchnorm(d)) == 1_714_724


@pytest.mark.parametrize("variant", ["helper", "alias"])
def test_use_both_deploys_to_the_se_checkpoint(variant):
    kw = (
        {"attn": "se", "last_norm_layer": asr_norm_layer("se")} if variant == "helper" else {"attn": "asr+se"}
    )
    m = _warm(attnkit.create_model("resnet164", num_classes=100, **kw))
    d = reparameterize_model(m)
    assert n_params(d) == 1_929_388
    attnkit.create_model("resnet164", num_classes=100, attn="se").load_state_dict(d.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y, yd = m(x), d(x)
    assert (y - yd).abs().max() <= 1e-5 * max(1.0, y.abs().max().item())


def test_training_state_untouched():
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", attn="asr")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    before = copy.deepcopy(m.state_dict())
    params = [id(p) for p in m.parameters()]
    grads = [p.grad.clone() for p in m.parameters()]
    rng = torch.get_rng_state()
    d = reparameterize_model(m, fold_bn=True)
    assert m.training and not d.training
    assert [id(p) for p in m.parameters()] == params
    assert all(torch.equal(a, b) for a, b in zip(before.values(), m.state_dict().values()))
    assert all(torch.equal(p.grad, g) for p, g in zip(m.parameters(), grads))
    assert torch.equal(rng, torch.get_rng_state())
    assert not set(map(id, d.parameters())) & set(params)
    m(torch.randn(4, 3, 32, 32)).sum().backward()  # training goes on
    opt.step()


def test_inplace():
    m = attnkit.create_model("resnet20", attn="asr")
    assert reparameterize_model(m, inplace=True) is m
    assert not any("psi" in k for k in m.state_dict())


@pytest.mark.parametrize("builder", ["preresnet", "torchvision", "attnkit50"])
def test_fold_batchnorm_any_model(builder):
    torch.manual_seed(0)
    if builder == "preresnet":  # BN before conv: must not be folded into the wrong conv
        m, hw = attnkit.create_model("preresnet164"), 32
    elif builder == "torchvision":
        tv = pytest.importorskip("torchvision")
        m, hw = tv.models.resnet18(num_classes=10), 64
    else:
        m, hw = attnkit.create_model("resnet50", num_classes=10), 64
    m = _warm(m, hw).double()
    x = torch.randn(2, 3, hw, hw, dtype=torch.float64)
    f = fold_batchnorm(m)
    with torch.no_grad():
        y, yf = m(x), f(x)
    assert (y - yf).abs().max() <= 1e-10 * max(1.0, y.abs().max().item())
    n_bn = sum(isinstance(mod, nn.BatchNorm2d) for mod in f.modules())
    assert n_bn < sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())
    if builder != "preresnet":
        assert n_bn == 0


def test_pairs_skip_shared_outputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            c = self.conv(x)
            return self.bn(c) + c  # conv output used twice: folding would be wrong

    assert find_fusable_pairs(Two()) == []


def test_torch_export_has_no_attention_ops():
    m = _warm(attnkit.create_model("resnet20", num_classes=10, attn="asr"))
    x = torch.randn(2, 3, 32, 32)

    def ops(model):
        ep = torch.export.export(model, (x,))
        return [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]

    train_ops = ops(m)
    count = lambda lst, key: sum(key in o for o in lst)  # noqa: E731
    assert count(train_ops, "sigmoid") == 9  # the check can fail: the ASR form has its 9 gates
    assert count(train_ops, "mean") == 9 + 1
    plain = ops(attnkit.create_model("resnet20", num_classes=10).eval())
    for fold in (False, True):
        deployed = ops(reparameterize_model(m, fold_bn=fold))
        assert count(deployed, "sigmoid") == 0 and count(deployed, "mul") == 0
        assert count(deployed, "mean") == 1  # only the head's global pooling
        assert count(deployed, "conv2d") == count(plain, "conv2d") == count(train_ops, "conv2d") - 18
        assert count(deployed, "batch_norm") == (0 if fold else count(plain, "batch_norm"))
        if not fold:
            assert sorted(deployed) == sorted(plain)


def test_cli_reparam_engine_checkpoint(tmp_path, capsys):
    from attnkit.cli import main

    m = _warm(attnkit.create_model("resnet20", num_classes=10, attn="asr_se"))
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "model": m.state_dict(),
            "config": {"model": "resnet20", "attn": "asr_se", "attn_kwargs": {}, "num_classes": None},
            "epoch": 0,
        },
        ckpt,
    )
    assert main(["reparam", str(ckpt), "--out", str(tmp_path / "d.pt"), "--no-latency"]) == 0
    text = capsys.readouterr().out
    assert "deployed" in text and "attn='se'" in text
    sd = torch.load(tmp_path / "d.pt", weights_only=True)
    se = attnkit.create_model("resnet20", num_classes=10, attn="se")
    se.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(se.eval()(x), m(x), atol=1e-5, rtol=0)
    torch.save(m.state_dict(), tmp_path / "plain.pt")  # a plain state_dict needs --model
    assert main(["reparam", str(tmp_path / "plain.pt"), "--no-latency"]) == 2
    assert (
        main(
            ["reparam", str(tmp_path / "plain.pt"), "--model", "resnet20", "--attn", "asr_se", "--no-latency"]
        )
        == 0
    )
