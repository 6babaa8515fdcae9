"""DDPMSchedule on diffusers' DDPMScheduler/DDIMScheduler."""

import pytest
import torch

pytest.importorskip("diffusers", reason="needs attnkit[diffusion]")

from attnkit.diffusion import DDPMSchedule, ddpm_loss  # noqa: E402


def test_alpha_bar_and_add_noise():
    s = DDPMSchedule()
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4, abs=1e-15)
    assert s.alphas_cumprod.dtype == torch.float64
    x0 = torch.randn(5, 3)
    t = torch.tensor([0, 1, 10, 500, 999])
    xt = s.add_noise(x0, torch.randn(5, 3), t)
    assert xt.shape == x0.shape and xt.dtype == x0.dtype


@pytest.mark.parametrize("steps", [1, 10])
def test_ddim_with_perfect_oracle_recovers_x0(steps):
    s = DDPMSchedule()
    x0 = torch.rand(4, 2, 3, dtype=torch.float64) * 2 - 1
    ab = s.alphas_cumprod

    def oracle(x, t):  # the ε that maps x_t back to x0 exactly
        a = ab[t].view(-1, *([1] * (x.ndim - 1)))
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    g = torch.Generator().manual_seed(0)
    out = s.sample(oracle, x0.shape, num_inference_steps=steps, generator=g, dtype=torch.float64)
    assert (out - x0).abs().max().item() < 1e-8


def test_loss_is_eps_mse_and_validates():
    s = DDPMSchedule()
    x0 = torch.randn(8, 1, 4, 4)
    t, noise = s.draw(x0, torch.Generator().manual_seed(1))
    perfect = s.loss(lambda x, tt: noise, x0, t=t, noise=noise)
    assert perfect.item() == 0.0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    zero = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    assert torch.equal(ddpm_loss(zero, x0, s, g1), s.loss(zero, x0, g2))  # same stream, same loss
    with pytest.raises(ValueError, match="both"):
        s.loss(zero, x0, t=t)
    with pytest.raises(ValueError, match="num_inference_steps"):
        s.sample(zero, (1, 2), num_inference_steps=0)
