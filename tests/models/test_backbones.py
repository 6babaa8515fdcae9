"""Backbone anatomy, placement, schemes, init and error handling (backbones spec acceptance checks)."""

import math

import pytest
import torch
from torch import nn

from attnkit import create_attn, create_model, list_models
from attnkit.models import ResNet, format_scheme, parse_scheme


def test_list_models_has_the_families():
    names = set(list_models())
    assert {
        "resnet20",
        "resnet32",
        "resnet56",
        "resnet110",
        "resnet164",
        "preresnet164",
        "resnet18",
        "resnet34",
        "resnet50",
    } <= names


@pytest.mark.parametrize(
    "name,shape,classes",
    [
        ("resnet20", (2, 3, 32, 32), 10),
        ("resnet164", (2, 3, 96, 96), 10),
        ("preresnet164", (2, 3, 32, 32), 100),
        ("resnet18", (2, 3, 64, 64), 1000),
        ("resnet50", (1, 3, 64, 64), 7),
    ],
)
def test_forward_shapes(name, shape, classes):
    m = create_model(name, num_classes=classes).eval()
    with torch.no_grad():
        assert m(torch.randn(*shape)).shape == (shape[0], classes)
    feats = m.forward_features(torch.randn(*shape))
    assert feats.shape[1] == m.num_features == m.stage_channels[-1]


def test_stage_attributes():
    m = create_model("resnet164")
    assert m.stage_channels == (64, 128, 256)
    assert m.blocks_per_stage == (18, 18, 18)
    assert create_model("resnet50").blocks_per_stage == (3, 4, 6, 3)


def test_resnet164_strides_and_projections():
    m = create_model("resnet164")
    b = m.stages[1].blocks[0]
    assert b.conv1.stride == (1, 1) and b.conv2.stride == (2, 2)
    proj = b.downsample[0]
    assert (proj.in_channels, proj.out_channels, proj.stride) == (64, 128, (2, 2))
    p0 = m.stages[0].blocks[0].downsample[0]
    assert (p0.in_channels, p0.out_channels, p0.stride) == (16, 64, (1, 1))
    assert isinstance(m.stages[0].blocks[1].downsample, nn.Identity)


def test_stride_in_1x1_moves_the_stride():
    b = create_model("resnet50", stride_in_1x1=True).stages[1].blocks[0]
    assert b.conv1.stride == (2, 2) and b.conv2.stride == (1, 1)


def test_preresnet_shortcut_has_no_bn_and_no_relu_after_add():
    m = create_model("preresnet164").eval()
    sc = m.stages[0].blocks[0].downsample
    assert not any(isinstance(x, nn.BatchNorm2d) for x in sc.modules())
    blk = m.stages[0].blocks[1]
    u, s = -torch.ones(1, 64, 4, 4), torch.zeros(1, 64, 4, 4)
    assert torch.equal(blk.merge(u, s), u)  # negative values survive: no ReLU
    post = create_model("resnet164").stages[0].blocks[1]
    assert torch.equal(post.merge(u, s), torch.zeros_like(u))


def test_se_hidden_width_paper_vs_timm():
    assert create_attn("se", 64).rd_channels == 8  # timm default (divisor 8)
    assert "rd_channels=8" in repr(create_attn("se", 64))
    m = create_model("resnet164", attn="se")
    assert m.stages[0].blocks[0].attn.rd_channels == 4  # paper widths via paper_kwargs
    m2 = create_model("resnet164", attn="se", attn_kwargs={"rd_divisor": 8})
    assert m2.stages[0].blocks[0].attn.rd_channels == 8  # user keys win


def test_per_stage_attn_kwargs():
    m = create_model("resnet50", attn="eca", attn_kwargs=[{"kernel_size": k} for k in (3, 5, 5, 7)])
    assert [s.blocks[0].attn.kernel_size for s in m.stages] == [3, 5, 5, 7]
    with pytest.raises(ValueError, match="per-stage"):
        create_model("resnet50", attn="eca", attn_kwargs=[{}, {}])


def test_eca_kernel_rule_and_guard():
    assert [create_attn("eca", c).kernel_size for c in (64, 256, 1024, 2048)] == [3, 5, 5, 7]
    with pytest.raises(ValueError, match="odd"):
        create_attn("eca", 64, kernel_size=4)


def test_unknown_names_list_registered():
    with pytest.raises(ValueError, match="se"):
        create_attn("nope", 64)
    with pytest.raises(ValueError, match="resnet20"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="registered"):
        create_model("resnet20", attn="nope")


def test_bad_sharing_and_options():
    with pytest.raises(ValueError, match="sharing"):
        create_model("resnet20", attn="se", sharing="global")
    with pytest.raises(TypeError, match="shortcut"):
        create_model("resnet164", shortcut="A")
    with pytest.raises(TypeError, match="stride_in_1x1"):
        create_model("resnet18", stride_in_1x1=True)
    with pytest.raises(TypeError):
        create_model("resnet20", not_an_option=1)


def test_wrong_in_chans_is_a_clear_error():
    m = create_model("resnet20", in_chans=1)
    with pytest.raises(RuntimeError, match="in_chans=1"):
        m(torch.randn(2, 3, 32, 32))
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_placement_hook_sees_last_bn_output():
    m = create_model("resnet164", attn="se").eval()
    seen, bn_out = [], {}
    for si, st in enumerate(m.stages):
        for bi, blk in enumerate(st.blocks):
            blk.bn3.register_forward_hook(lambda mod, i, o, k=(si, bi): bn_out.__setitem__(k, o))
            blk.attn.register_forward_hook(lambda mod, i, o, k=(si, bi): seen.append((k, i[0])))
    with torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    assert len(seen) == 54
    for k, inp in seen:
        assert inp is bn_out[k]


def test_identity_gates_equal_plain_model():
    torch.manual_seed(1)
    plain = create_model("resnet56").eval()
    torch.manual_seed(1)
    gated = create_model("resnet56", attn="se").eval()
    gated.load_state_dict(plain.state_dict(), strict=False)
    for st in gated.stages:
        for blk in st.blocks:
            blk.attn = nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gated(x), plain(x), atol=1e-6, rtol=0)


def test_all_zero_scheme_equals_plain():
    plain = create_model("resnet50", num_classes=10).eval()
    zero = create_model(
        "resnet50", num_classes=10, attn="se", sharing="stage", scheme="000|0000|000000|000"
    ).eval()
    assert sum(p.numel() for p in zero.parameters()) == sum(p.numel() for p in plain.parameters())
    zero.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(zero(x), plain(x))


def test_scheme_parsing_and_errors():
    masks = parse_scheme("110|0011|110010|011", (3, 4, 6, 3))
    assert format_scheme(masks) == "110|0011|110010|011"
    assert parse_scheme([[1, 0], [0, 1]], (2, 2)) == ((True, False), (False, True))
    with pytest.raises(ValueError, match=r"stage 1 has 2 digit\(s\) but needs 3"):
        create_model("resnet50", attn="se", scheme="11|0011|110010|011")
    with pytest.raises(ValueError, match="illegal"):
        create_model("resnet50", attn="se", scheme="1x0|0011|110010|011")
    with pytest.raises(ValueError, match="stage"):
        create_model("resnet50", attn="se", scheme="110|0011")
    m = create_model("resnet50", attn="se", scheme="110|0011|110010|011")
    assert str(m.scheme) == "110|0011|110010|011"
    assert m.stages[0].blocks[2].attn is None and m.stages[0].blocks[0].attn is not None


def test_set_scheme_switches_shared_module():
    m = create_model("resnet20", attn="se", sharing="stage").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = m(x)
        m.set_scheme("000|000|000")
        none = m(x)
        m.set_scheme("111|111|111")
        again = m(x)
    assert not torch.allclose(full, none)
    assert torch.equal(full, again)


def test_backbone_init():
    m = create_model("resnet164", attn="se")
    attn_convs = {id(mod) for st in m.stages for b in st.blocks for mod in b.attn.modules()}
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and id(mod) not in attn_convs and mod.weight.numel() > 2000:
            k = mod.kernel_size[0] * mod.kernel_size[1]
            want = math.sqrt(2.0 / (k * mod.out_channels))
            assert abs(mod.weight.std().item() / want - 1) < 0.1
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    for st in m.stages:
        for b in st.blocks:
            for fc in (b.attn.fc1, b.attn.fc2):
                assert fc.weight.abs().max() <= 1 / math.sqrt(fc.in_channels) + 1e-7


def test_zero_init_residual():
    m = create_model("resnet20", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for st in m.stages for b in st.blocks)


def test_attn_config_records_resolution():
    m = create_model("resnet20", attn="se", scheme="101|111|010")
    assert isinstance(m, ResNet)
    assert m.attn_config["attn"] == "se" and m.attn_config["sharing"] == "block"
    assert m.attn_config["scheme"] == "101|111|010"
    assert m.attn_config["attn_kwargs"][0]["rd_divisor"] == 1


def test_timm_interop():
    timm = pytest.importorskip("timm")
    from attnkit.attention import SEModule

    m = timm.create_model("resnet18", pretrained=False, num_classes=10, block_args=dict(attn_layer=SEModule))
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert any(isinstance(x, SEModule) for x in m.modules())


def test_se_checkpoint_converter_round_trip():
    from attnkit.attention.se import se_conv_to_linear, se_linear_to_conv

    m = create_attn("se", 64)
    sd = {f"layer.{k}": v for k, v in m.state_dict().items()}
    lin = se_conv_to_linear(sd)
    assert lin["layer.fc1.weight"].shape == (8, 64)
    back = se_linear_to_conv(lin)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_resnet_builders_take_the_documented_options_only():
    from attnkit.models import cifar_resnet, imagenet_resnet
    from attnkit.models.resnet import RESNET_OPTIONS

    m = cifar_resnet(20, attn="se", sharing="stage", scheme="101|010|111", zero_init_residual=True)
    assert str(m.scheme) == "101|010|111" and m.stages[0].attn is not None
    assert all(float(b.bn2.weight.abs().sum()) == 0 for st in m.stages for b in st.blocks)  # zero-init
    for build, args in ((cifar_resnet, (20,)), (imagenet_resnet, ("resnet18",))):
        with pytest.raises(TypeError, match="unexpected keyword arguments \\['final_norm'\\]") as e:
            build(*args, final_norm=True)  # an internal build_resnet option is not a public keyword
        assert all(o in str(e.value) for o in RESNET_OPTIONS)
