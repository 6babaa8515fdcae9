"""SE (arXiv 1709.01507): official-checkpoint loading, timm equivalence, gate protocol."""

import pytest
import torch
from torch import nn

from attnkit import create_attn
from attnkit.attention import SEModule, module_gate
from attnkit.attention.se import se_conv_to_linear, se_linear_to_conv


class OfficialSE(nn.Module):
    """Reference SE block in the official layout (SENet's PyTorch ports): ``fc = Sequential(Linear, ReLU,
    Linear, Sigmoid)`` on the globally average-pooled features."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c = x.shape[:2]
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y


class OfficialBlock(nn.Module):
    """A block holding the SE module under ``se`` (keys ``se.fc.0.weight``, ...), as official ResNets."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.se = OfficialSE(channels, bias=bias)

    def forward(self, x):
        return self.se(self.conv(x))


class OurBlock(nn.Module):
    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.se = SEModule(channels, rd_divisor=1, bias=bias)

    def forward(self, x):
        return self.se(self.conv(x))


@pytest.mark.parametrize("bias", [True, False])
def test_se_linear_to_conv_loads_an_official_checkpoint(tmp_path, bias):
    torch.manual_seed(0)
    ref = OfficialBlock(64, bias=bias).eval()
    torch.save(ref.state_dict(), tmp_path / "se_official.pth")
    sd = torch.load(tmp_path / "se_official.pth", weights_only=True)
    assert "se.fc.0.weight" in sd and sd["se.fc.0.weight"].shape == (4, 64)
    ours = OurBlock(64, bias=bias).eval()
    ours.load_state_dict(se_linear_to_conv(sd), strict=True)
    x = torch.randn(3, 64, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)
    # and back to the official names and shapes
    back = se_conv_to_linear(ours.state_dict(), official_names=True)
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_se_linear_to_conv_top_level_module_and_other_keys():
    ref = OfficialSE(32)
    conv = se_linear_to_conv(ref.state_dict())
    assert sorted(conv) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    assert conv["fc1.weight"].shape == (2, 32, 1, 1) and conv["fc2.weight"].shape == (32, 2, 1, 1)
    other = {"fc.weight": torch.zeros(10, 4), "layer.fc.0.weight": torch.zeros(2, 4)}
    out = se_linear_to_conv(other)
    assert out["fc.weight"].shape == (10, 4)  # a plain classifier stays as it is
    assert out["layer.fc1.weight"].shape == (2, 4, 1, 1)


def test_se_linear_round_trip_attnkit_names():
    m = create_attn("se", 64)
    sd = {f"layer.{k}": v for k, v in m.state_dict().items()}
    lin = se_conv_to_linear(sd)
    assert lin["layer.fc1.weight"].shape == (8, 64)
    back = se_linear_to_conv(lin)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_se_equals_timm_semodule_given_the_same_weights():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    for c in (16, 64, 256):
        theirs = timm.layers.SEModule(c).eval()
        ours = SEModule(c).eval()
        assert ours.rd_channels == theirs.fc1.out_channels
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.randn(2, c, 5, 4)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


def test_timm_resnet_with_our_se_equals_timm_se():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model("resnet18", pretrained=False, num_classes=10, block_args=dict(attn_layer="se"))
    ours = timm.create_model(
        "resnet18", pretrained=False, num_classes=10, block_args=dict(attn_layer=SEModule)
    )
    assert any(isinstance(m, SEModule) for m in ours.modules())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_se_gate_protocol():
    torch.manual_seed(0)
    m = SEModule(32).eval()
    x = torch.randn(2, 32, 4, 4)
    z = m.fc2(m.act(m.fc1(x.mean((2, 3), keepdim=True))))
    assert torch.equal(m.gate_logits(x), z)
    assert torch.equal(m(x), x * torch.sigmoid(z))
    assert torch.equal(module_gate(m, x), torch.sigmoid(z))
    assert "rd_channels=8" in repr(m) and "gate=sigmoid" in repr(m)


def test_act_layer_by_name_and_class():
    m = SEModule(32, act_layer="silu")
    assert isinstance(m.act, nn.SiLU)
    assert isinstance(SEModule(32, act_layer=nn.GELU).act, nn.GELU)
    with pytest.raises(ValueError, match="unknown activation"):
        SEModule(32, act_layer="no_such_act")
