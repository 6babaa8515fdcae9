"""attnkit.measure.counting: golden MAC/param counts of the reference backbones, the counting rules
(batch, modes, backward, analytic per-module deltas, attention written three ways, element-wise
estimate, shared parameters) and the deployed form."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_attn, create_model, list_attn
from attnkit.measure import count_params, profile
from attnkit.models import Bottleneck
from attnkit.reparam import reparameterize_model

CIFAR = (3, 32, 32)


def _meta_model(name: str, **kw) -> nn.Module:
    """Build a model on the meta device: FlopCounterMode counts shapes, so no arithmetic is needed."""
    with torch.device("meta"):
        return create_model(name, **kw)


# ------------------------------------------------------------------------------------------------
# Golden counts of the reference backbones (papers' and official code's figures)
# ------------------------------------------------------------------------------------------------


def test_resnet164_golden_macs_flops_params():
    rep = profile(create_model("resnet164", num_classes=100), input_size=CIFAR)
    assert rep.macs == 247_669_760
    assert rep.flops == 495_339_520
    assert rep.params_total == 1_727_284 == rep.params_trainable
    assert rep.batch_size == 1 and rep.input_shape == CIFAR and rep.form == "train-time"
    assert rep.macs_backward is None and rep.elementwise_flops is None
    # the called top-level modules (stem, the three stages, head) add up to the total
    top = ["stem", "stages.0", "stages.1", "stages.2", "head"]
    assert sum(rep.by_module[k] for k in top) == rep.macs
    assert rep.by_module["head.fc"] == 256 * 100


@pytest.mark.parametrize(
    "attn, params, macs",
    [("se", 1_929_388, 247_863_296), ("cbam", 1_934_788, 250_427_648), ("eca", 1_727_518, 247_707_776)],
)
def test_resnet164_attention_golden(attn, params, macs):
    rep = profile(create_model("resnet164", num_classes=100, attn=attn), input_size=CIFAR)
    assert rep.macs == macs
    assert rep.params_total == params
    assert rep.model_name == f"resnet164+{attn}"


def test_resnet164_se_delta_is_sum_of_block_deltas():
    # 18 blocks per stage, C = 64/128/256, h = C/16 (rd_divisor 1 in the papers' config): sum of 2·C·h
    expected = 18 * sum(2 * c * (c // 16) for c in (64, 128, 256))
    assert expected == 193_536
    plain = profile(_meta_model("resnet164", num_classes=100), input_size=CIFAR).macs
    se = profile(_meta_model("resnet164", num_classes=100, attn="se"), input_size=CIFAR).macs
    assert se - plain == expected


def test_resnet164_96px_10_classes_golden():
    rep = profile(_meta_model("resnet164", num_classes=10), input_size=(3, 96, 96))
    assert rep.macs == 2_228_800_000
    assert rep.params_total == 1_704_154


def test_meta_device_counts_equal_real_counts():
    real = profile(create_model("resnet20", attn="se"), input_size=CIFAR)
    meta = profile(_meta_model("resnet20", attn="se"), input_size=CIFAR)
    assert real.macs == meta.macs and real.params_total == meta.params_total
    assert real.by_module == meta.by_module
    assert real.macs == 40_813_184 + sum(3 * 2 * c * (c // 16) for c in (16, 32, 64))


@pytest.mark.slow
def test_resnet50_golden_macs_real_forward():
    model = create_model("resnet50")
    rep = profile(model, input_size=(3, 224, 224))
    assert rep.macs == 4_089_184_256
    assert rep.flops == 2 * 4_089_184_256
    assert rep.params_total == 25_557_032


def test_resnet50_v1_layout_golden_macs():
    rep = profile(_meta_model("resnet50", stride_in_1x1=True), input_size=(3, 224, 224))
    assert rep.macs == 3_857_973_248  # the SE/ECA papers' "3.86 GFLOPs" is this MAC count


# ------------------------------------------------------------------------------------------------
# Batch, modes, backward
# ------------------------------------------------------------------------------------------------


def test_batch8_inputs_same_per_sample_macs():
    model = create_model("resnet20")
    one = profile(model, input_size=CIFAR)
    eight = profile(model, inputs=torch.randn(8, *CIFAR))
    assert eight.batch_size == 8 and eight.input_shape == CIFAR
    assert eight.macs == one.macs == 40_813_184
    assert eight.by_module == one.by_module
    assert profile(model, CIFAR, batch_size=3).macs == one.macs
    with pytest.raises(ValueError, match="batch_size"):
        profile(model, inputs=torch.randn(4, *CIFAR), batch_size=2)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backward", [False, True])
def test_training_flag_bn_stats_and_grads_untouched(training, backward):
    model = create_model("resnet20", attn="se")
    model.stages[0].blocks[0].bn1.eval()  # a mixed-mode model: every flag must come back as it was
    model.train(training)
    model.stages[0].blocks[0].bn1.eval()
    flags = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rep = profile(model, input_size=CIFAR, batch_size=2, backward=backward)
    assert {n: m.training for n, m in model.named_modules()} == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert (rep.macs_backward is not None) == backward


def test_training_flag_restored_on_error():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("boom")

    m = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        profile(m, (3, 8, 8))
    assert m.training and m.conv.training


def test_backward_macs_exact():
    # backward = 2 × forward (input grad + weight grad) minus the first conv's input gradient,
    # which autograd does not compute (3 -> 16 channels, 3×3, 32×32).
    rep = profile(create_model("resnet20"), input_size=CIFAR, batch_size=2, backward=True)
    first_conv = 3 * 16 * 9 * 32 * 32
    assert rep.macs_backward == 2 * rep.macs - first_conv
    assert rep.flops_backward == 2 * rep.macs_backward
    assert 2.9 < (rep.macs + rep.macs_backward) / rep.macs < 3.0


def test_backward_batch1_bn_error_is_clear():
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        profile(m, (3, 2, 2), backward=True)


def test_compiled_model_counts_the_eager_module():
    m = create_model("resnet20")
    assert profile(torch.compile(m, backend="eager"), CIFAR).macs == 40_813_184


# ------------------------------------------------------------------------------------------------
# Analytic per-module deltas and attention written three ways
# ------------------------------------------------------------------------------------------------


def _block_macs(attn: nn.Module | None, c: int = 256, hw: int = 8) -> int:
    blk = Bottleneck(c, c // 4, norm_layer=nn.BatchNorm2d, last_norm_layer=nn.BatchNorm2d)
    blk.attn = attn
    return profile(blk, (c, hw, hw)).macs


def test_se_block_delta_exact():
    se = create_attn("se", 256, rd_channels=16)
    assert se.rd_channels == 16
    assert _block_macs(se) - _block_macs(None) == 2 * 256 * 16 == 8_192


def test_eca_block_delta_exact():
    assert _block_macs(create_attn("eca", 256, kernel_size=5)) - _block_macs(None) == 5 * 256 == 1_280


def test_cbam_module_macs_exact():
    c, h, hw = 256, 16, 8
    cbam = create_attn("cbam", c, rd_channels=h)
    assert profile(cbam, (c, hw, hw)).macs == 4 * c * h + 98 * hw * hw


@pytest.mark.parametrize("name", ["srm", "sge", "ie"])
def test_zero_mac_gates(name):
    if name not in list_attn():
        pytest.skip(f"{name!r} is not registered in this build")
    m = create_attn(name, 256)
    assert profile(m, (256, 8, 8)).macs == 0
    assert _block_macs(create_attn(name, 256)) == _block_macs(None)


class _SpatialSelfAttentionBlock(nn.Module):
    """3×3 conv + BN, then 4-head self-attention over the H·W positions (bias-free 1×1 qkv/proj)."""

    def __init__(self, c: int = 64, heads: int = 4, impl: str = "einsum"):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)
        self.proj = nn.Conv2d(c, c, 1, bias=False)
        self.heads, self.impl = heads, impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = (
            self.qkv(x).reshape(n, 3, self.heads, d, h * w).transpose(-1, -2).unbind(1)
        )  # (N, heads, L, d)
        if self.impl == "einsum":
            a = torch.einsum("nhld,nhmd->nhlm", q, k).mul(d**-0.5).softmax(-1)  # (N, heads, L, L)
            o = torch.einsum("nhlm,nhmd->nhld", a, v)
        elif self.impl == "matmul":
            a = (q @ k.transpose(-2, -1) * d**-0.5).softmax(-1)
            o = a @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, d)
        o = o.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj(o)


def test_spatial_self_attention_same_macs_three_ways():
    c, hw = 64, 14
    n_pos = hw * hw
    analytic_convs = c * c * 9 * n_pos + c * 3 * c * n_pos + c * c * n_pos
    expected = analytic_convs + 2 * n_pos**2 * c
    assert expected == 15_353_856  # 15.354 M
    torch.manual_seed(0)
    blocks = {impl: _SpatialSelfAttentionBlock(impl=impl).eval() for impl in ("einsum", "matmul", "sdpa")}
    x = torch.randn(1, c, hw, hw)
    ref = blocks["einsum"](x)
    for impl, blk in blocks.items():
        blk.load_state_dict(blocks["einsum"].state_dict())
        assert torch.allclose(blk(x), ref, atol=1e-5), impl  # the three forms compute the same thing
        assert profile(blk, (c, hw, hw)).macs == expected, impl


# ------------------------------------------------------------------------------------------------
# Element-wise estimate, markdown (check 7); count_params (check 8); reparam
# ------------------------------------------------------------------------------------------------


def test_elementwise_estimate_separate_and_exact_for_se():
    c, h, hw = 64, 8, 8
    se = create_attn("se", c, rd_channels=h)
    plain = profile(se, (c, hw, hw))
    rep = profile(se, (c, hw, hw), elementwise=True)
    assert rep.macs == plain.macs == 2 * c * h and rep.flops == plain.flops
    # mean over C·H·W inputs, ReLU on h, sigmoid on C, x * gate on C·H·W (conv biases are in the conv op)
    assert rep.elementwise_flops == 2 * c * hw * hw + h + c


def test_elementwise_leaves_model_macs_unchanged():
    m = create_model("resnet20", attn="cbam")
    a, b = profile(m, CIFAR), profile(m, CIFAR, elementwise=True)
    assert a.macs == b.macs and a.by_module == b.by_module
    assert b.elementwise_flops > 0


def test_report_markdown_dict_and_str_label_macs_and_flops_separately():
    rep = profile(create_model("resnet20"), CIFAR, elementwise=True)
    md = rep.to_markdown()
    header = md.splitlines()[0].split("|")
    cells = [h.strip() for h in header]
    assert "MACs (M)" in cells and "FLOPs (M)" in cells
    row = [h.strip() for h in md.splitlines()[2].split("|")]
    assert row[cells.index("MACs (M)")] == "40.813" and row[cells.index("FLOPs (M)")] == "81.626"
    d = rep.to_dict()
    assert d["macs"] == 40_813_184 and d["flops"] == 81_626_368 and d["input_shape"] == [3, 32, 32]
    json.dumps(d)
    s = str(rep)
    assert "MACs 40.81 M" in s and "FLOPs 81.63 M" in s


def test_count_params_shared_once_and_lazy_raises():
    shared = nn.Linear(8, 8)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_params(m) == 8 * 8 + 8
    shared.bias.requires_grad_(False)
    assert count_params(m, trainable_only=True) == 64
    m.register_buffer("stat", torch.zeros(100))
    assert count_params(m) == 72  # buffers are not parameters
    lazy = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match="forward pass first"):
        count_params(lazy)
    with pytest.raises(ValueError, match="forward pass first"):
        profile(lazy, (8,))
    lazy(torch.randn(2, 8))
    assert count_params(lazy) == 8 * 4 + 4
    # a stage-shared module is counted once and its MACs summed over its calls
    a = create_model("resnet20", attn="se", sharing="stage")
    rep = profile(a, CIFAR, depth=3)
    assert rep.params_total == count_params(a) == sum(p.numel() for p in a.parameters())
    assert rep.by_module["stages.0.attn"] == 3 * 2 * 16 * 1  # 3 calls of 2·C·h, C = 16, h = 1


def test_reparam_profiles_the_deployed_form():
    asr = create_model("resnet20", attn="asr")
    train_time = profile(asr, CIFAR)
    deployed = profile(reparameterize_model(asr), CIFAR)
    plain = profile(create_model("resnet20"), CIFAR)
    assert deployed.form == "deployed" and train_time.form == "train-time"
    assert deployed.macs == plain.macs < train_time.macs
    assert deployed.params_total == plain.params_total
    assert any(type(m).__name__.startswith("ASR") for m in asr.modules())  # caller's model is not fused


def test_bad_inputs_raise():
    m = create_model("resnet20")
    with pytest.raises(ValueError, match="input_size"):
        profile(m, (3, 0, 32))
    with pytest.raises(ValueError, match="batch_size"):
        profile(m, CIFAR, batch_size=0)
    with pytest.raises(TypeError):
        profile("resnet20", CIFAR)


def test_attnkit_profile_is_a_plain_function():
    import types

    import attnkit
    import attnkit.measure

    assert isinstance(attnkit.profile, types.FunctionType) and attnkit.profile is attnkit.measure.profile
    rep = attnkit.profile(nn.Conv2d(3, 4, 3, bias=False), (3, 8, 8))
    assert rep.macs == 3 * 4 * 9 * 6 * 6
