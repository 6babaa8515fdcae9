"""Stripe statistics (ASR paper Fig. 1): streaming std, ASR layers constant, plots."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import attnkit
from attnkit.analysis import attention_layers, plot_stripes, stripe_matrix, stripe_statistics
from attnkit.attention.asr import module_gate


@pytest.fixture(scope="module")
def images():
    return torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_se_layers_have_positive_scores_and_shapes(images):
    torch.manual_seed(0)
    # timm widths (hidden 8): with the paper's width 1 at C = 16 the single hidden ReLU can be dead for all
    # inputs, and then that layer's gate is exactly constant (score 0) - a real effect, not a bug.
    m = attnkit.create_model("resnet20", attn="se", attn_kwargs={"rd_divisor": 8})
    loader = DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=24)
    stats = stripe_statistics(m, loader, bins=20)
    assert m.training  # mode restored
    layers = attention_layers(m)
    assert len(layers) == 9 and set(stats) == {*layers, "__all__"}
    for name in layers:
        st = stats[name]
        assert st.score > 0 and st.score_in > 0
        assert st.std.shape == (st.channels,) and st.hist.shape == (20,) and st.num_images == 64
        assert int(st.hist.sum()) == st.channels
    assert stats["__all__"].channels == sum(stats[n].channels for n in layers)


def test_streaming_matches_direct_std(images):
    torch.manual_seed(0)
    m = attnkit.create_model("resnet20", attn="se").eval()
    layer = attention_layers(m)[4]
    rows = []
    h = m.get_submodule(layer).register_forward_hook(
        lambda mod, a, o: rows.append(module_gate(mod, a[0]).flatten(1))
    )
    with torch.no_grad():
        m(images)
    h.remove()
    direct = torch.cat(rows).double().std(0, unbiased=False)
    st = stripe_statistics(m, images, layers=[layer])[layer]  # batches of 64 -> use 3 uneven ones below
    st3 = stripe_statistics(m, DataLoader(images, batch_size=23), layers=[layer])[layer]
    torch.testing.assert_close(st.std, direct, atol=1e-6, rtol=0)
    torch.testing.assert_close(st3.std, direct, atol=1e-6, rtol=0)


def test_asr_layers_are_exact_stripes(images, tmp_path):
    m = attnkit.create_model("resnet20", attn="asr")
    stats = stripe_statistics(m, images, num_images=40)
    asr = [n for n in stats if n != "__all__"]
    assert len(asr) == 9 and all(n.endswith("bn2") for n in asr)
    for n in asr:
        assert stats[n].score <= 1e-12 and float(stats[n].std.max()) <= 1e-12 and stats[n].num_images == 40
        assert stats[n].score_in > 0
    mat = stripe_matrix(m, images, asr[0])
    assert mat.shape == (20, 16) and torch.allclose(mat, mat[:1].expand_as(mat))
    assert plot_stripes(stats, tmp_path / "hist.png").stat().st_size > 0
    assert plot_stripes(mat, tmp_path / "sub" / "matrix.png").stat().st_size > 0


def test_errors(images):
    with pytest.raises(ValueError, match="no module with a readable gate"):
        stripe_statistics(attnkit.create_model("resnet20"), images)
    m = attnkit.create_model("resnet20", attn="se")
    with pytest.raises(ValueError, match="no module named"):
        stripe_statistics(m, images, layers=["nope"])
    with pytest.raises(TypeError, match="exposes no gate"):
        stripe_statistics(m, images, layers=["stem"])
