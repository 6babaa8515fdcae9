"""apply_scalelong on diffusers' UNet2DModel (positional tuple) and UNet2DConditionModel (keyword tuple)."""

import pytest
import torch

pytest.importorskip("diffusers", reason="needs attnkit[diffusion]")

from diffusers import UNet2DConditionModel, UNet2DModel  # noqa: E402

from attnkit.diffusion import apply_scalelong  # noqa: E402


def _n(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
    ).eval()


def test_unet2d_skips_identity_and_remove(unet):
    assert _n(unet) == 1_539_329
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 600])
    with torch.no_grad():
        ref = unet(x, t).sample
        h = apply_scalelong(unet, "cs", kappa=1.0)
        assert len(h.coefficients) == 9 and h.num_skips == 9
        assert h.channels == [32, 32, 32, 32, 64, 64, 64, 64, 64]
        assert torch.equal(unet(x, t).sample, ref)
        h.remove()
        h = apply_scalelong(unet, "cs", kappa=0.5)
        assert h.coefficients == [0.5**g for g in range(9)]
        assert not torch.equal(unet(x, t).sample, ref)
        h.remove()
        assert torch.equal(unet(x, t).sample, ref)


def test_unet2d_hook_scales_the_right_tensors(unet):
    seen = []
    hook = unet.up_blocks[0].register_forward_pre_hook(lambda m, a: seen.append([s.clone() for s in a[1]]))
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([5])
    with torch.no_grad():
        unet(x, t)
        h = apply_scalelong(unet, "cs", kappa=0.5)
        hook.remove()  # re-register after ScaleLong's hook so it sees the scaled tuple
        hook = unet.up_blocks[0].register_forward_pre_hook(
            lambda m, a: seen.append([s.clone() for s in a[1]])
        )
        unet(x, t)
    hook.remove()
    h.remove()
    for e, (plain, scaled) in enumerate(zip(seen[0], seen[1], strict=True)):  # up block 0 = globals 6, 7, 8
        assert torch.equal(scaled, plain * 0.5 ** (6 + e))


def test_unet2d_ls_nonshared_and_shared(unet):
    before = _n(unet)
    h = apply_scalelong(unet, "ls_nonshared")
    assert _n(unet) - before == 3548 and len(h.gates) == 9
    assert "scalelong_gates" in dict(unet.named_children())
    assert any(k.startswith("scalelong_gates.") for k in unet.state_dict())
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 600])
    unet(x, t).sample.square().mean().backward()
    assert all(p.grad is not None for g in h.gates for p in g.parameters())
    unet.zero_grad(set_to_none=True)
    with pytest.raises(TypeError, match="already"):
        apply_scalelong(unet, "cs")
    h.remove()
    assert _n(unet) == before and "scalelong_gates" not in dict(unet.named_children())
    with pytest.raises(ValueError, match="same channel count"):
        apply_scalelong(unet, "ls")


def test_unet2d_condition_keyword_path():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    ).eval()
    x, t, enc = torch.randn(2, 4, 16, 16), torch.tensor([1, 900]), torch.randn(2, 5, 32)
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=enc).sample
        h = apply_scalelong(unet, "cs", kappa=1.0)
        assert h.num_skips == 6
        assert torch.equal(unet(x, t, encoder_hidden_states=enc).sample, ref)
        h.remove()
        h = apply_scalelong(unet, "cs", kappa=0.5)
        assert not torch.allclose(unet(x, t, encoder_hidden_states=enc).sample, ref)
        h.remove()
        assert torch.equal(unet(x, t, encoder_hidden_states=enc).sample, ref)


def test_cpu_unet_backbone_of_the_experiment():
    from attnkit.diffusion import build_backbone, feature_module

    torch.manual_seed(0)
    plain = build_backbone("unet-tiny", img_size=8, lsc_scaling="none")
    assert _n(plain) == 917_889 and plain._attnkit_scalelong.num_skips == 6
    torch.manual_seed(0)
    cs1 = build_backbone("unet-tiny", img_size=8, lsc_scaling="cs", kappa=1.0)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 800])
    with torch.no_grad():
        assert torch.equal(plain(x, t).sample, cs1(x, t).sample)
    assert feature_module(cs1) is cs1.conv_norm_out
    torch.manual_seed(0)
    small = build_backbone("unet-small", img_size=28, lsc_scaling="cs", kappa=1.0)
    assert _n(small) == 636_465 and small._attnkit_scalelong.channels == [16, 16, 16, 32, 32, 64]
    torch.manual_seed(0)
    ref = build_backbone("unet-small", img_size=28, lsc_scaling="none")
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 800])
    with torch.no_grad():
        assert torch.equal(small(x, t).sample, ref(x, t).sample)
