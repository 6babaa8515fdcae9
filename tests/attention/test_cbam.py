"""CBAM (arXiv 1807.06521): composition, initial spatial gate, timm equivalence."""

import pytest
import torch

from attnkit import create_attn


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_cbam_spatial_gate_half_in_eval_too():
    m = create_attn("cbam", 64).eval()
    cap = {}
    m.spatial.gate.register_forward_hook(lambda mod, i, o: cap.setdefault("g", o))
    m(torch.randn(2, 64, 8, 8))
    assert torch.all(cap["g"] == 0.5)


def test_cbam_is_a_channel_then_a_spatial_gate():
    torch.manual_seed(0)
    m = create_attn("cbam", 32).eval()
    with torch.no_grad():
        m.spatial.bn.weight.fill_(0.7)
        m.spatial.bn.bias.fill_(0.1)
    x = torch.randn(2, 32, 6, 5)
    x1 = x * torch.sigmoid(m.channel.gate_logits(x))
    assert m.channel.gate_logits(x).shape == (2, 32, 1, 1)
    assert m.spatial.gate_logits(x1).shape == (2, 1, 6, 5)
    y = x1 * torch.sigmoid(m.spatial.gate_logits(x1))
    assert torch.equal(m(x), y)
    torch.testing.assert_close(x * m.attention(x), y, atol=1e-6, rtol=0)


def test_cbam_equals_timm_cbam_given_the_same_weights():
    pytest.importorskip("timm")
    from timm.layers.cbam import CbamModule

    torch.manual_seed(0)
    theirs = CbamModule(64, rd_ratio=1 / 16, rd_divisor=1).eval()
    ours = create_attn("cbam", 64).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.3)
        bn = theirs.spatial.conv.bn
        bn.running_mean.normal_(0, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    sd = {
        "channel.fc1.weight": theirs.channel.fc1.weight,
        "channel.fc2.weight": theirs.channel.fc2.weight,
        # timm pools [mean, max] over channels, the official code [max, mean]: swap the conv's inputs
        "spatial.conv.weight": theirs.spatial.conv.conv.weight[:, [1, 0]],
        **{f"spatial.bn.{k}": v for k, v in bn.state_dict().items()},
    }
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(2, 64, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)
