"""LSAS (arXiv 2305.05200): counts, sub-attention chain, official placement."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit import create_model
from attnkit.attention import (
    LSASModule,
    SEModule,
)
from attnkit.attention.lsas import lsas_official_scheme, lsas_state_dict_from_official

R164_LAST = lsas_official_scheme((18, 18, 18))
SIG = torch.sigmoid


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("lsas", {"scheme": R164_LAST}, 1_888_852),
        ("lsas", {}, 1_945_516),
    ],
)
def test_resnet164_cifar100_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=100, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize(
    "attn, kwargs, expected",
    [
        ("lsas", {"scheme": R164_LAST}, 1_865_722),
    ],
)
def test_resnet164_cifar10_param_counts(attn, kwargs, expected):
    assert n_params(create_model("resnet164", num_classes=10, attn=attn, **kwargs)) == expected


@pytest.mark.parametrize("order, expected", [(0, 1_879_636), (2, 1_898_068), (3, 1_907_284), (5, 1_925_716)])
def test_lsas_order_counts_official_placement(order, expected):
    m = create_model(
        "resnet164", num_classes=100, attn="lsas", scheme=R164_LAST, attn_kwargs={"order": order}
    )
    assert n_params(m) == expected


def test_lsas_chain_init_and_base_equivalence():
    torch.manual_seed(0)
    x = torch.randn(4, 64, 5, 5)
    m0, se = LSASModule(64, order=0, rd_divisor=1), SEModule(64, rd_divisor=1)
    m0.base.load_state_dict(se.state_dict())
    assert (m0(x) - se(x)).abs().max() <= 1e-7
    for order, expected in ((1, 0.188770), (2, 0.060562)):
        m = LSASModule(64, order=order, rd_divisor=1)
        with torch.no_grad():
            m.base.fc2.weight.zero_()
            m.base.fc2.bias.zero_()
        assert (m.attention(x) - expected).abs().max() < 1e-6
    m = LSASModule(64, order=1, rd_divisor=1)
    z = m.base.fc2(F.relu(m.base.fc1(x.mean((2, 3), keepdim=True))))
    torch.testing.assert_close(m.attention(x), SIG(z) * SIG(0.5 * z - 0.5), atol=1e-6, rtol=0)
    m3 = LSASModule(64, order=3, rd_divisor=1)
    with torch.no_grad():
        m3.sub_weight.normal_()
        m3.sub_bias.normal_()
    z = m3.base.fc2(F.relu(m3.base.fc1(x.mean((2, 3), keepdim=True))))
    s, v = z, SIG(z)
    for k in range(3):
        s = m3.sub_weight[k].view(1, 64, 1, 1) * s + m3.sub_bias[k].view(1, 64, 1, 1)
        v = v * SIG(s)
    torch.testing.assert_close(m3.attention(x), v, atol=1e-6, rtol=0)
    allv = m3.sub_attentions(x)
    assert len(allv) == 4 and torch.equal(allv[-1], m3.attention(x))
    torch.testing.assert_close(allv[0], SIG(z))
    with pytest.raises(ValueError, match="order"):
        LSASModule(64, order=-1)
    with pytest.raises(ValueError, match="valid bases"):
        LSASModule(64, base="spem")
    sd = {
        "fc1.weight": m3.base.fc1.weight.flatten(1),
        "fc1.bias": m3.base.fc1.bias,
        "fc2.weight": m3.base.fc2.weight.flatten(1),
        "fc2.bias": m3.base.fc2.bias,
    }
    for k, name in enumerate(("", "2", "3")):
        sd[f"w{name}"] = m3.sub_weight[k].view(1, 64, 1, 1)
        sd[f"b{name}"] = m3.sub_bias[k].view(1, 64, 1, 1)
    m4 = LSASModule(64, order=3, rd_divisor=1)
    m4.load_state_dict(lsas_state_dict_from_official(sd))
    torch.testing.assert_close(m4.attention(x), m3.attention(x))


def test_lsas_official_placement():
    assert lsas_official_scheme((3, 4, 6, 3)) == "000|0000|111111|111"
    model = create_model("resnet164", num_classes=100, attn="lsas", scheme=R164_LAST)
    assert lsas_official_scheme(model) == R164_LAST
    owners = [n for n, m in model.named_modules() if isinstance(m, LSASModule)]
    assert len(owners) == 18 and all(n.startswith("stages.2.") for n in owners)
    hits = []
    hs = [
        m.register_forward_hook(lambda *a: hits.append(1))
        for m in model.modules()
        if isinstance(m, LSASModule)
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    assert len(hits) == 18
    for h in hs:
        h.remove()
