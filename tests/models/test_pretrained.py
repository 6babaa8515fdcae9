"""torchvision/timm weights into attnkit's backbones; save_pretrained/from_pretrained round trips."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

import attnkit
from attnkit.models.pretrained import (
    from_pretrained,
    load_torchvision_weights,
    remap_resnet_keys,
    save_pretrained,
)

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _random_tv(name):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_give_identical_logits(name):
    tv = _random_tv(name)
    m = attnkit.create_model(name, pretrained=tv.state_dict()).eval()
    assert m.pretrained_report.missing == [] and m.pretrained_report.unexpected == []
    assert torch.equal(m(X), tv(X))


def test_timm_weights_give_identical_logits():
    timm = pytest.importorskip("timm", reason="needs attnkit[timm]")
    t = timm.create_model("resnet18", pretrained=False).eval()
    m = attnkit.create_model("resnet18")
    load_torchvision_weights(m, t.state_dict())
    assert torch.equal(m.eval()(X), t(X))


@pytest.mark.parametrize("attn", ["se", "asr", "dia"])
def test_attention_parameters_are_listed_as_new(attn):
    tv = _random_tv("resnet18")
    m = attnkit.create_model("resnet18", attn=attn, pretrained=tv.state_dict())
    rep = m.pretrained_report
    assert rep.missing and all(".attn." in k or k.endswith(".psi") for k in rep.missing)
    n_backbone = len(tv.state_dict())
    assert len(rep.loaded) == n_backbone


def test_weights_file_and_errors(tmp_path):
    tv = _random_tv("resnet18")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": tv.state_dict()}, path)
    m = attnkit.create_model("resnet18", pretrained=path).eval()
    assert torch.equal(m(X), tv(X))
    with pytest.raises(ValueError, match="shape"):
        attnkit.create_model("resnet18", num_classes=10, pretrained=tv.state_dict())
    with pytest.raises(FileNotFoundError):
        attnkit.create_model("resnet18", pretrained=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no weight matched"):
        attnkit.create_model("resnet18", pretrained={"foo.weight": torch.zeros(1)})


def test_remap_rules():
    sd = {"conv1.weight": 1, "bn1.bias": 2, "layer3.5.conv2.weight": 3, "fc.bias": 4, "other": 5}
    assert remap_resnet_keys(sd) == {
        "stem.0.weight": 1,
        "stem.1.bias": 2,
        "stages.2.blocks.5.conv2.weight": 3,
        "head.fc.bias": 4,
        "other": 5,
    }


@pytest.mark.parametrize(
    "kw",
    [
        {"attn": "se"},
        {"attn": "ras", "sharing": "stage"},
        {"attn": "dia"},
        {"attn": "eca", "scheme": "101|010|111"},
    ],
)
def test_save_pretrained_round_trip(tmp_path, kw):
    m = attnkit.create_model("resnet20", num_classes=10, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_pretrained(m, tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["model"] == "resnet20" and cfg["attn"] == kw["attn"]
    m2 = from_pretrained(tmp_path / "model")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m.eval()(x), m2(x))
    m3 = attnkit.create_model("resnet20", num_classes=10, pretrained=tmp_path / "model", **kw).eval()
    assert torch.equal(m3(x), m2(x))


def test_save_pretrained_errors(tmp_path):
    with pytest.raises(ValueError, match="create_model"):
        save_pretrained(nn.Linear(2, 2), tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path)
