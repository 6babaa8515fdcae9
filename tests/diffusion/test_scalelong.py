"""ScaleLong: coefficients, LS gates, U-ViT skip scaling and hooks on diffusers UNets (acceptance checks)."""

import pytest
import torch

from attnkit.diffusion import LSCGate, UViT, apply_scalelong, lsc_coefficients, uvit_tiny


def test_coefficients_cs_and_sqrt2():
    assert lsc_coefficients(6, "cs", 0.5) == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert lsc_coefficients(4, "sqrt2") == [2**-0.5] * 4
    assert lsc_coefficients(3, "none") == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kw", [dict(kappa=0.0), dict(kappa=1.5), dict(mode="ls"), dict(num_skips=0)])
def test_coefficients_bad_input(kw):
    args = dict(num_skips=4, mode="cs", kappa=0.5) | kw
    with pytest.raises(ValueError):
        lsc_coefficients(**args)


def test_gate_shapes_range_and_repr():
    g = LSCGate(257, layout="tokens")
    assert sum(p.numel() for p in g.parameters()) == 8497  # the official CIFAR-10 gate
    assert "hidden=16" in repr(g)
    a = g(torch.randn(3, 257, 8))
    assert a.shape == (3, 257, 1) and (a > 0).all() and (a < 1).all()
    c = LSCGate(32, layout="channels")
    assert c(torch.randn(2, 32, 5, 5)).shape == (2, 32, 1, 1)
    assert LSCGate(8, layout="tokens").hidden == 1  # max(L // 16, 1): the official code would give 0
    with pytest.raises(ValueError, match="layout"):
        LSCGate(8, layout="rows")


def test_uvit_cs_kappa1_equals_none_bit_for_bit():
    torch.manual_seed(0)
    a = uvit_tiny(lsc_scaling="none")
    b = uvit_tiny(lsc_scaling="cs", kappa=1.0)
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    assert torch.equal(a(x, t), b(x, t))


@pytest.mark.parametrize("kappa", [0.5, 0.7])
def test_uvit_out_block_receives_kappa_power(kappa):
    torch.manual_seed(0)
    m = uvit_tiny(lsc_scaling="cs", kappa=kappa)
    n = m.num_skips
    skips, fused = {}, {}
    for i, blk in enumerate(m.in_blocks):
        blk.register_forward_hook(lambda mod, inp, out, i=i: skips.__setitem__(i, out.detach().clone()))
    for j, blk in enumerate(m.out_blocks):
        blk.skip_linear.register_forward_hook(
            lambda mod, inp, out, j=j: fused.__setitem__(j, inp[0].detach().clone())
        )
    m(torch.randn(2, 1, 8, 8), torch.tensor([3, 700]))
    d = m.embed_dim
    for j in range(n):
        s = skips[n - 1 - j]  # out-block j pops the (N-1-j)-th in-block output
        assert torch.equal(fused[j][..., d:], s * kappa ** (n - 1 - j))


@pytest.mark.parametrize("mode", ["ls", "ls_nonshared"])
def test_uvit_ls_gates_train_and_fix_the_size(mode):
    torch.manual_seed(0)
    m = uvit_tiny(img_size=16, lsc_scaling=mode)  # 65 tokens, gate hidden width 4
    gates = [m.lsc_gate] if mode == "ls" else list(m.lsc_gates)
    assert len(gates) == (1 if mode == "ls" else 6)
    m(torch.randn(4, 1, 16, 16), torch.tensor([1, 2, 300, 900])).square().mean().backward()
    for g in gates:
        for p in g.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="65"):  # 1 time token + 64 patches
        m(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))


def test_uvit_bad_arguments():
    with pytest.raises(ValueError, match="lsc_scaling"):
        UViT(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=2, num_heads=2, lsc_scaling="free")
    with pytest.raises(ValueError, match="kappa"):
        UViT(
            img_size=8,
            patch_size=2,
            in_chans=1,
            embed_dim=16,
            depth=2,
            num_heads=2,
            lsc_scaling="cs",
            kappa=0,
        )
    with pytest.raises(ValueError, match="patch_size"):
        UViT(img_size=9, patch_size=2)


def test_apply_scalelong_rejects_non_unets():
    with pytest.raises(TypeError, match="down_blocks"):
        apply_scalelong(torch.nn.Linear(2, 2))
