"""attach()/detach() on torchvision and timm ResNets (model surgery)."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import attnkit
from attnkit.models.surgery import AttachedStage, BlockAdapter, attach, detach, find_stages


class _Identity(nn.Module):
    """A zero-effect 'attention' module: attach() with it must not change any output."""

    def __init__(self, channels, **_):
        super().__init__()

    def forward(self, x):
        return x


def _perturbed(m):
    """Non-trivial BN statistics and scales (timm zero-initialises the last BN), so equalities mean something."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


def _tv(name):
    torch.manual_seed(0)
    return _perturbed(getattr(torchvision.models, name)())


def _timm(name):
    timm = pytest.importorskip("timm", reason="needs attnkit[timm]")
    torch.manual_seed(0)
    return _perturbed(timm.create_model(name, pretrained=False))


MODELS = [
    pytest.param(lambda: _tv("resnet18"), id="tv-resnet18"),
    pytest.param(lambda: _tv("resnet50"), id="tv-resnet50"),
    pytest.param(lambda: _tv("resnext50_32x4d"), id="tv-resnext50"),
    pytest.param(lambda: _timm("resnet50"), id="timm-resnet50"),
    pytest.param(lambda: _timm("resnet18"), id="timm-resnet18"),
]
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("build", MODELS)
def test_identity_attachment_is_bit_exact(build):
    m = build()
    ref = m(X)
    attach(m, _Identity)
    assert sum(isinstance(s, AttachedStage) for s in m.modules()) == 4
    assert torch.equal(m(X), ref)


@pytest.mark.parametrize("build", MODELS[:2] + MODELS[3:4])
@pytest.mark.parametrize(
    "attn,sharing,n_new",
    [("se", "block", None), ("se", "stage", 4), ("dia", None, 4), ("eca", "block", None)],
)
def test_attach_trains_and_keeps_original_keys(build, attn, sharing, n_new):
    m = build()
    sd = copy.deepcopy(m.state_dict())
    n_blocks = sum(len(s) for _, s in find_stages(m))
    attach(m, attn, sharing=sharing)
    new_mods = [mm for mm in m.modules() if type(mm).__name__ in ("SEModule", "ECAModule", "DIALSTM")]
    assert len(new_mods) == (n_new or n_blocks)
    res = m.load_state_dict(sd, strict=False)  # every original key still exists
    assert res.unexpected_keys == [] and all(("attn" in k) for k in res.missing_keys)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in m.state_dict().items() if "attn" in k}
    loss = m(X).logsumexp(1).mean()
    loss.backward()
    opt.step()
    after = m.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the new module learns


@pytest.mark.parametrize("build", MODELS[:2] + MODELS[3:4])
def test_asr_fuses_back_to_the_plain_architecture(build):
    plain = build()
    m = attach(copy.deepcopy(plain), "asr")
    m.train()
    m(X).sum().backward()  # the training form runs
    m.eval()
    fused = attnkit.reparameterize_model(m)
    fresh = copy.deepcopy(plain)
    res = fresh.load_state_dict(fused.state_dict(), strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    fresh.eval()
    assert torch.allclose(fresh(X), m(X), rtol=1e-4, atol=1e-5)
    assert torch.equal(fresh(X), fused(X))


def test_state_dict_reloaded_model_attaches_the_same():
    a = _tv("resnet50")
    b = torchvision.models.resnet50()
    b.load_state_dict(a.state_dict())
    b.eval()
    torch.manual_seed(3)
    attach(a, "se")
    torch.manual_seed(3)
    attach(b, "se")
    assert torch.equal(a(X), b(X))


def test_iebn_replaces_branch_norms_keeping_bn_weights():
    m = _tv("resnet18")
    bn = copy.deepcopy(m.layer1[0].bn1)
    attach(m, "iebn")
    new = m.layer1[0].bn1
    assert type(new).__name__ == "IEBN2d"
    assert torch.equal(new.weight, bn.weight) and torch.equal(new.running_var, bn.running_var)
    assert isinstance(m.layer2[0].downsample[1], nn.BatchNorm2d)  # projection BNs stay plain
    with pytest.raises(ValueError, match="cannot be detached"):
        detach(m)


def test_detach_restores_the_original():
    m = _tv("resnet18")
    ref = m(X)
    keys = list(m.state_dict())
    attach(m, "se", sharing="stage", scheme="10|01|11|00")
    assert not torch.equal(m(X), ref)
    detach(m)
    assert list(m.state_dict()) == keys and torch.equal(m(X), ref)
    assert isinstance(m.layer1, nn.Sequential)


def test_scheme_masks_blocks():
    m = _tv("resnet18")
    attach(m, "se", scheme="10|01|11|00")
    assert [len(s.block_attn) for s in (m.layer1, m.layer2, m.layer3, m.layer4)] == [1, 1, 2, 0]


def test_errors_name_the_problem():
    m = _tv("resnet18")
    with pytest.raises(ValueError, match="sharing"):
        attach(m, "se", sharing="layer")
    with pytest.raises(ValueError, match="unknown attention"):
        attach(m, "sex")
    with pytest.raises(ValueError, match="no residual stage"):
        attach(nn.Sequential(nn.Conv2d(3, 8, 3)), "se")
    with pytest.raises(ValueError, match="cannot be shared"):
        attach(m, "asr", sharing="stage")
    attach(m, "se")
    with pytest.raises(ValueError, match="already"):
        attach(m, "eca")
    with pytest.raises(TypeError, match="BlockAdapter"):
        attnkit.models.register_block_adapter(nn.Conv2d, object())


def test_user_adapter_for_a_custom_block():
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)
            self.norm = nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(self.norm(self.conv(x)) + x)

    class Adapter(BlockAdapter):
        last_norm = "norm"
        branch_norms = ("norm",)

        def residual(self, block, x):
            return block.norm(block.conv(x))

    attnkit.models.register_block_adapter(Block, Adapter())
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sequential(Block(8), Block(8))).eval()
    ref = net(X)
    attach(net, _Identity)
    assert torch.equal(net(X), ref)
