"""The one connection-scheme type: encodings, the official EAN schemes, and one vocabulary shared by
``create_model(scheme=...)``, ``ResNet.set_scheme`` and the search."""

import pytest
import torch

import attnkit.search
from attnkit.models import EAN_SCHEMES, ConnectionScheme, create_model, official_scheme

R50 = (3, 4, 6, 3)


def test_int_form_matches_official_examples():
    assert ConnectionScheme.parse("100|1011|010011|011").to_ints() == (4, 11, 19, 3)
    assert str(ConnectionScheme.from_ints((6, 3, 50, 3), R50)) == "110|0011|110010|011"
    assert ConnectionScheme.from_ints((7, 15, 63, 7), R50) == ConnectionScheme.full(R50)
    assert ConnectionScheme.from_ints((0, 0, 0, 0), R50) == ConnectionScheme.empty(R50)


def test_flat_string_split_by_stage_lengths():
    assert ConnectionScheme.parse("1001011010011011", R50) == ConnectionScheme.parse("100|1011|010011|011")
    assert ConnectionScheme.parse("100|1011|010011|011").bits == "1001011010011011"


def test_round_trip_random_schemes():
    g = torch.Generator().manual_seed(0)
    for _ in range(1000):
        s = ConnectionScheme.random((18, 18, 18), generator=g)
        assert ConnectionScheme.parse(str(s)) == s
        assert ConnectionScheme.from_ints(s.to_ints(), s.blocks_per_stage) == s
        assert ConnectionScheme.from_bits(s.as_tensor().tolist(), s.blocks_per_stage) == s
        assert s.sparsity == pytest.approx(1 - s.num_connected / 54)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="only '0', '1'"):
        ConnectionScheme.parse("11a|0")
    with pytest.raises(ValueError, match=r"\(3, 3, 3\)"):
        ConnectionScheme.coerce("110|01", (3, 3, 3))
    with pytest.raises(ValueError, match="must lie in"):
        ConnectionScheme.from_ints((8, 0, 0, 0), R50)
    with pytest.raises(ValueError, match="needs blocks_per_stage"):
        ConnectionScheme.parse("1101")
    assert str(ConnectionScheme.only_stages(R50, (2, 3))) == "000|0000|111111|111"


def test_official_schemes_by_name_and_in_models():
    assert str(official_scheme("fbresnet50_sge")) == EAN_SCHEMES["fbresnet50_sge"] == "100|1011|010011|011"
    assert official_scheme("EAN-ResNet50-DIA").to_ints() == (6, 3, 50, 3)
    for name in EAN_SCHEMES:
        s = official_scheme(name)
        assert s.num_connected == 9 and s.blocks_per_stage == R50
    with pytest.raises(ValueError, match="known"):
        official_scheme("nope")
    assert ConnectionScheme.coerce("none", (3, 3, 3)).num_connected == 0
    assert ConnectionScheme.coerce("full", (3, 3, 3)).num_connected == 9
    with pytest.raises(ValueError, match=r"blocks_per_stage \(3, 3, 3\)"):
        ConnectionScheme.coerce("fbresnet50_dia", (3, 3, 3))
    m = create_model(
        "resnet50", num_classes=10, attn="se", sharing="stage", scheme=str(official_scheme("fbresnet50_dia"))
    )
    assert m.scheme == official_scheme("fbresnet50_dia")  # the model reports the one scheme type
    assert isinstance(m.scheme, ConnectionScheme)


def test_search_uses_the_models_type():
    assert attnkit.search.ConnectionScheme is ConnectionScheme
    assert attnkit.search.official_scheme is official_scheme


@pytest.mark.parametrize(
    "value, expected",
    [
        ("all", "111|111|111"),
        ("full", "111|111|111"),
        ("none", "000|000|000"),
        ("EMPTY", "000|000|000"),
        (None, "111|111|111"),
        ("101|111|010", "101|111|010"),
        ("101 | 111 | 010", "101|111|010"),
        ("101111010", "101|111|010"),
        ([[1, 0, 1], [1, 1, 1], [0, 1, 0]], "101|111|010"),
        (torch.tensor([1, 0, 1, 1, 1, 1, 0, 1, 0]), "101|111|010"),
        ([1, 0, 1, 1, 1, 1, 0, 1, 0], "101|111|010"),
    ],
)
def test_one_vocabulary_for_models_and_search(value, expected):
    s = ConnectionScheme.coerce(value, (3, 3, 3))
    assert str(s) == expected
    m = create_model("resnet20", attn="se", sharing="stage", scheme=value)
    assert m.scheme == s and str(m.scheme) == expected
    m.set_scheme(value)
    assert str(m.scheme) == expected


def test_official_name_builds_a_model():
    m = create_model("resnet50", num_classes=10, attn="se", sharing="stage", scheme="fbresnet50_sge")
    assert str(m.scheme) == EAN_SCHEMES["fbresnet50_sge"]
    with pytest.raises(ValueError, match=r"blocks_per_stage \(3, 3, 3\)"):
        create_model("resnet20", attn="se", sharing="stage", scheme="fbresnet50_sge")


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"illegal.*only '0', '1'.*official name"):
        ConnectionScheme.coerce("alll", (3, 3, 3))
    with pytest.raises(ValueError, match=r"stage 2 has 2 digit\(s\) but needs 3"):
        ConnectionScheme.coerce("111|11|111", (3, 3, 3))
    with pytest.raises(ValueError, match=r"2 stage\(s\) but the model has 3"):
        ConnectionScheme.coerce("111|111", (3, 3, 3))
    with pytest.raises(ValueError, match="9 blocks"):
        ConnectionScheme.coerce("1111", (3, 3, 3))
    with pytest.raises(ValueError, match="0 or 1"):
        ConnectionScheme.coerce([[1, 2, 0], [1, 1, 1], [0, 0, 0]], (3, 3, 3))
    with pytest.raises(ValueError, match="empty string"):
        ConnectionScheme.coerce(" ", (3, 3, 3))
    with pytest.raises(TypeError, match="scheme must be"):
        ConnectionScheme.coerce(7, (3, 3, 3))
