"""Golden parameter counts from the backbones spec (§3, §6): official-code [code] and [measured] figures."""

import pytest
import torch

from attnkit import create_model


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


CASES = [
    ("resnet164", dict(num_classes=100), 1_727_284),
    ("resnet164", dict(num_classes=10), 1_704_154),
    ("resnet164", dict(num_classes=100, attn="se"), 1_929_388),
    ("resnet164", dict(num_classes=10, attn="se"), 1_906_258),
    ("resnet164", dict(num_classes=100, attn="se", attn_kwargs={"rd_divisor": 8}), 1_938_676),
    ("resnet164", dict(num_classes=100, attn="cbam"), 1_934_788),
    ("resnet164", dict(num_classes=100, attn="eca"), 1_727_518),
    ("resnet164", dict(num_classes=100, attn="eca", attn_kwargs={"kernel_size": 3}), 1_727_446),
    ("preresnet164", dict(num_classes=100), 1_726_388),
    ("preresnet164", dict(num_classes=10), 1_703_258),
    ("preresnet164", dict(num_classes=100, extra_bn=True), 1_742_516),
    ("preresnet164", dict(num_classes=100, attn="se"), 1_928_492),
    ("resnet20", dict(), 272_474),
    ("resnet20", dict(shortcut="A"), 269_722),
    ("resnet32", dict(), 466_906),
    ("resnet44", dict(shortcut="A"), 658_586),
    ("resnet56", dict(), 855_770),
    ("resnet110", dict(), 1_730_714),
    ("resnet110", dict(shortcut="A"), 1_727_962),
    ("resnet20", dict(num_classes=100, attn="se"), 280_697),
    ("resnet56", dict(num_classes=100, attn="se"), 868_739),
    ("resnet110", dict(num_classes=100, attn="se"), 1_750_802),
    ("resnet18", dict(), 11_689_512),
    ("resnet34", dict(), 21_797_672),
    ("resnet50", dict(), 25_557_032),
    ("resnet101", dict(), 44_549_160),
    ("resnet50", dict(conv_bias=True), 25_583_592),
    ("resnet18", dict(attn="se"), 11_778_592),
    ("resnet34", dict(attn="se"), 21_958_868),
    ("resnet18", dict(attn="eca"), 11_689_548),
    ("resnet18", dict(attn="cbam"), 11_779_392),
]


@pytest.mark.parametrize("name,kwargs,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_golden_param_count(name, kwargs, expected):
    assert n_params(create_model(name, **kwargs)) == expected


def test_resnet50_matches_torchvision():
    tv = pytest.importorskip("torchvision.models")
    assert n_params(create_model("resnet50")) == n_params(tv.resnet50())


def test_stage_sharing_costs_one_eighteenth_of_block_se():
    plain = n_params(create_model("resnet164", num_classes=100))
    block = n_params(create_model("resnet164", num_classes=100, attn="se"))
    stage = n_params(create_model("resnet164", num_classes=100, attn="se", sharing="stage"))
    assert (block - plain) == 18 * (stage - plain)


def test_stage_shared_module_is_owned_once():
    m = create_model("resnet20", attn="se", sharing="stage")
    keys = [k for k in m.state_dict() if ".attn." in k]
    assert keys and all(k.startswith("stages.") and ".blocks." not in k for k in keys)
    assert len(keys) == 3 * 4  # fc1.w, fc1.b, fc2.w, fc2.b per stage
