"""DDPM training noise and DDIM sampling on diffusers' schedulers, for any tensor shape.

diffusers' ``DDPMScheduler`` adds the training noise and ``DDIMScheduler`` samples; this module only
wraps them as far as a one-line ε-prediction loss (:func:`ddpm_loss`) and a sampler need.

Reference:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, arXiv 2006.11239;
    Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, arXiv 2010.02502;
    diffusers https://github.com/huggingface/diffusers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._optional import require

__all__ = ["DDPMSchedule", "ddpm_loss"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _eps(model: Denoiser, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out = model(x, t)
    return out.sample if hasattr(out, "sample") else out  # diffusers UNets return a dataclass


class DDPMSchedule:
    """A linear-β DDPM schedule: diffusers' ``DDPMScheduler`` for training, ``DDIMScheduler`` for sampling.

    The schedule's β, α and ᾱ are kept in float64 (diffusers builds them in float32), so that a float64
    sampler with a perfect ε-oracle recovers x0 to 1e-8; float32 inputs are computed in float32.

    Args:
        num_train_timesteps: T.
        beta_start: β_1 (ᾱ_0 = 1 − beta_start).
        beta_end: β_T.
        clip_sample: clip the DDIM x0 prediction to [−1, 1] (for images in [−1, 1]; keep False for latents).

    Raises:
        ValueError: ``num_train_timesteps < 1`` or betas not in (0, 1) with ``beta_start <= beta_end``.
        ImportError: diffusers is missing (``pip install 'attnkit[diffusion]'``).

    Reference:
        DDPM, arXiv 2006.11239; DDIM, arXiv 2010.02502; diffusers ``DDPMScheduler``/``DDIMScheduler``.

    Deviations:
        ScaleLong's official code trains a continuous VP-SDE (β from 0.1 to 20) and samples with a 1,000-step
        Euler–Maruyama solver; attnkit uses discrete DDPM (T = 1000, linear β 1e-4 → 0.02) and DDIM with
        "trailing" timestep spacing (the first step starts at t = T − 1).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        clip_sample: bool = False,
    ):
        if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}")
        if not (0.0 < beta_start <= beta_end < 1.0):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        diffusers = require("diffusers", extra="diffusion")
        kw = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end)
        self.num_train_timesteps = num_train_timesteps
        self.train_scheduler = diffusers.DDPMScheduler(beta_schedule="linear", clip_sample=False, **kw)
        self.sample_scheduler = diffusers.DDIMScheduler(
            beta_schedule="linear", clip_sample=clip_sample, timestep_spacing="trailing", **kw
        )
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        alphas = 1.0 - betas
        for s in (self.train_scheduler, self.sample_scheduler):  # float64 schedule, same values
            s.betas, s.alphas, s.alphas_cumprod = betas, alphas, torch.cumprod(alphas, 0)
        self.sample_scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0 … T − 1 (float64)."""
        return self.train_scheduler.alphas_cumprod

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε (``DDPMScheduler.add_noise``).

        Shape:
            x0, noise: (B, ...); t: (B,) integer timesteps → (B, ...).
        """
        if x0.shape != noise.shape:
            raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have the same shape")
        return self.train_scheduler.add_noise(x0, noise, t.long())

    def draw(
        self, x0: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform timesteps t ∈ {0 … T − 1} and Gaussian noise ε for a batch (one generator stream).

        Returns:
            ``(t (B,), noise like x0)``.
        """
        dev = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.num_train_timesteps, (x0.shape[0],), generator=generator, device=dev)
        noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
        return t.to(x0.device), noise.to(x0.device)

    def loss(
        self,
        model: Denoiser,
        x0: torch.Tensor,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ε-prediction MSE ``‖ε − model(x_t, t)‖²`` (mean), t uniform, ε Gaussian.

        Args:
            model: ``model(x_t, t)`` returns ε̂ (a tensor or an object with ``.sample``, as diffusers UNets).
            x0: clean data (B, ...).
            generator: the stream for t and ε (pass the same one to paired runs).
            t: fixed (B,) timesteps instead of drawing them (pass ``noise`` too).
            noise: fixed noise like ``x0`` instead of drawing it (pass ``t`` too).

        Returns:
            The scalar loss.
        """
        if (t is None) != (noise is None):
            raise ValueError("pass both t and noise, or neither")
        if t is None:
            t, noise = self.draw(x0, generator)
        x_t = self.add_noise(x0, noise, t)
        return torch.nn.functional.mse_loss(_eps(model, x_t, t), noise)

    @torch.no_grad()
    def sample(
        self,
        model: Denoiser,
        shape: tuple[int, ...],
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        x_T: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DDIM sampling (``DDIMScheduler.step``) from x_T ~ N(0, I).

        Args:
            model: the ε-predictor.
            shape: the output shape (B, ...).
            num_inference_steps: DDIM steps (1 … T).
            eta: DDIM η (0 deterministic, 1 DDPM-like).
            generator: the stream of x_T and of the η noise.
            device: of the samples (default: the generator's device, else CPU).
            dtype: of the samples (float32 by default).
            x_T: the starting noise instead of drawing it.

        Returns:
            Samples of ``shape``.

        Raises:
            ValueError: ``num_inference_steps`` outside 1 … T.
        """
        if not 1 <= int(num_inference_steps) <= self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be in 1..{self.num_train_timesteps}, got {num_inference_steps}"
            )
        sch = self.sample_scheduler
        sch.set_timesteps(int(num_inference_steps))
        dev = (
            torch.device(device)
            if device is not None
            else (generator.device if generator else torch.device("cpu"))
        )
        x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=dev, dtype=dtype)
        for t in sch.timesteps:
            tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
            x = sch.step(_eps(model, x, tt), int(t), x, eta=eta, generator=generator).prev_sample
        return x


def ddpm_loss(model: Denoiser, x0: torch.Tensor, schedule: DDPMSchedule, generator=None) -> torch.Tensor:
    """One-line DDPM training loss: ``schedule.loss(model, x0, generator)`` (ε-MSE, t uniform).

    Args:
        model: the ε-predictor ``model(x_t, t)``.
        x0: clean data (B, ...).
        schedule: a :class:`DDPMSchedule`.
        generator: the stream for t and ε.

    Returns:
        The scalar loss.
    """
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
    return schedule.loss(model, x0, generator)
