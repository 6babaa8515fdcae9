"""Every registered module as timm's ``attn_layer`` (resnet50, regnetz_b16, cspresnet50), and act_layer."""

import functools
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from attnkit import create_attn, get_attn, list_attn

SWEEP = Path(__file__).resolve().parents[2] / "benchmarks" / "timm_attn_layer_sweep.py"


def _sweep_module():
    spec = importlib.util.spec_from_file_location("timm_attn_layer_sweep", SWEEP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", list_attn())
def test_every_module_accepts_timms_act_layer(name):
    m = create_attn(name, 64, act_layer=nn.SiLU)
    x = torch.randn(2, 64, 4, 4)
    if get_attn(name).kind == "recurrent":
        y, _ = m(x, None)
    else:
        y = m.train()(x)
    assert y.shape == x.shape
    create_attn(name, 64, act_layer="leaky_relu")  # a name works too


def test_act_layer_names_without_timm(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    monkeypatch.setitem(sys.modules, "timm.layers", None)
    assert isinstance(create_attn("se", 32, act_layer="leaky_relu").act, nn.LeakyReLU)
    with pytest.raises(ValueError, match="unknown activation 'gelu_tanh'"):
        create_attn("se", 32, act_layer="gelu_tanh")


def test_act_layer_names_resolve_through_timm_when_installed():
    pytest.importorskip("timm")
    from timm.layers.activations import GELUTanh

    m = create_attn("se", 32, act_layer="gelu_tanh")  # not in attnkit's torch table: timm resolves it
    assert isinstance(m.act, GELUTanh)


@pytest.mark.slow
def test_every_registered_module_in_three_timm_networks():
    pytest.importorskip("timm")
    torch.set_num_threads(1)
    table = _sweep_module().sweep()
    assert set(table) == set(list_attn())
    for name, cells in table.items():
        kind = get_attn(name).kind
        for model, cell in cells.items():
            if kind == "gate" and name != "sge":
                assert cell == "works", (name, model, cell)
            elif kind == "recurrent":
                assert cell.startswith("fails: TypeError") and "cannot be a timm attn_layer" in cell, cell
            elif kind in ("norm", "bn_wrapper"):
                assert cell.startswith("runs, but is not the method"), (name, model, cell)
    assert table["sge"]["resnet50"] == "works"  # 256..2048 channels: divisible by its 64 groups


def test_dia_as_attn_layer_raises_a_clear_error():
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "resnet18",
        pretrained=False,
        num_classes=10,
        block_args={"attn_layer": functools.partial(create_attn, "dia")},
    )
    with pytest.raises(TypeError, match="cannot be a timm attn_layer"):
        model(torch.randn(1, 3, 32, 32))
