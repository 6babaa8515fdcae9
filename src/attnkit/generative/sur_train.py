"""Training the SUR-adapter: frozen text encoder, UNet and VAE; only the adapter learns.

One step (:func:`sur_step`) draws diffusers ``DDPMScheduler`` noise for the image latents, runs the
adapter on the simple prompt's states, conditions the frozen UNet on the adapted states and returns
:func:`~attnkit.generative.sur_adapter.sur_loss` (ε- or v-prediction, as the scheduler says, optional
Min-SNR-γ weights). :func:`build_teacher_cache` computes the LLM's prompt vectors once and stores them
atomically.

Reference:
    SUR-adapter, arXiv 2305.05189, https://github.com/Qrange-group/SUR-adapter (``SUR_adapter_train.py``);
    Min-SNR weighting: Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy",
    arXiv 2303.09556; diffusers ``DDPMScheduler`` and ``training_utils.compute_snr``.

Deviations:
    ``detach_diffusion_loss=False`` by default: the official script detaches the adapted states before
    the UNet (``torch.tensor(y)``), so the diffusion loss never trains the adapter; ``True`` reproduces
    that. The official Min-SNR weight is ``min(SNR, γ)/SNR`` for both ε- and v-prediction;
    ``snr_official=False`` uses ``min(SNR, γ)/(SNR + 1)`` for v-prediction (the form diffusers' own
    training scripts use).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .._io import atomic_torch_save, safe_torch_load
from .._optional import require
from .sur_adapter import SURAdapter, SURLoss, sur_loss

__all__ = ["min_snr_weights", "sur_step", "build_teacher_cache"]


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, official: bool = True) -> torch.Tensor:
    """Min-SNR-γ per-sample weights of the diffusion MSE.

    Args:
        scheduler: a diffusers ``DDPMScheduler`` (its ``alphas_cumprod`` and ``config.prediction_type``).
        timesteps: (B,) integer timesteps.
        gamma: γ (5 is the paper's recommendation).
        official: ``min(SNR, γ)/SNR`` for every prediction type (SUR-adapter's script); False divides by
            ``SNR + 1`` under v-prediction.

    Shape:
        returns (B,) float32.
    """
    training_utils = require("diffusers.training_utils", extra="llm")
    snr = training_utils.compute_snr(scheduler, timesteps).float()  # (B,)
    w = torch.clamp(snr, max=gamma)
    if scheduler.config.prediction_type == "v_prediction" and not official:
        return w / (snr + 1)
    return w / snr


def sur_step(
    adapter: SURAdapter,
    unet: Callable,
    scheduler,
    latents: torch.Tensor,
    simple_states: torch.Tensor,
    complex_states: torch.Tensor,
    llm_vecs: torch.Tensor | None,
    *,
    detach_diffusion_loss: bool = False,
    snr_gamma: float | None = None,
    snr_official: bool = True,
    llm_weight: float = 1e-5,
    prompt_weight: float = 1e-5,
    kd_direction: str = "official",
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    timesteps: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> SURLoss:
    """One SUR-adapter training loss: noise the latents, adapt the prompt, denoise with the frozen UNet.

    Args:
        adapter: the trained module.
        unet: the frozen denoiser, ``unet(x_t, t, encoder_hidden_states=y)`` (a diffusers
            ``UNet2DConditionModel``; a ``.sample`` attribute is unwrapped).
        scheduler: a diffusers ``DDPMScheduler`` (``add_noise``, ``get_velocity``, ``prediction_type``).
        latents: x0 (B, C, H, W): VAE latents × scaling factor for SD, or pixels for a pixel UNet.
        simple_states: the simple prompts' text-encoder states (B, T, d).
        complex_states: the complex prompts' states (B, T, d).
        llm_vecs: the raw teacher vectors z (B, D_llm), or None to skip the LLM term.
        detach_diffusion_loss: cut the diffusion gradient to the adapter (the official script).
        snr_gamma: Min-SNR γ; None for the plain mean.
        snr_official: see :func:`min_snr_weights`.
        llm_weight: weight of the LLM distillation term.
        prompt_weight: weight of the complex-prompt distillation term.
        kd_direction: ``"official"`` or ``"forward"`` (:func:`~attnkit.generative.sur_adapter.kd_loss`).
        temperature: the KD temperature.
        generator: the stream of t and ε.
        timesteps: fixed (B,) timesteps instead of drawing them.
        noise: fixed noise like ``latents`` instead of drawing it.

    Returns:
        A :class:`~attnkit.generative.sur_adapter.SURLoss`.

    Raises:
        ValueError: an unknown ``prediction_type``.
    """
    b = latents.shape[0]
    dev = latents.device
    if timesteps is None:
        gdev = generator.device if generator is not None else dev
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=gdev
        )
    if noise is None:
        gdev = generator.device if generator is not None else dev
        noise = torch.randn(latents.shape, generator=generator, device=gdev, dtype=latents.dtype)
    timesteps, noise = timesteps.to(dev).long(), noise.to(dev)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"unsupported prediction_type {kind!r} (epsilon or v_prediction)")
    out = adapter(simple_states)  # (y, h, o), each (B, T, d)
    y = out[0].detach() if detach_diffusion_loss else out[0]
    pred = unet(noisy, timesteps, encoder_hidden_states=y.to(noisy.dtype))
    pred = pred.sample if hasattr(pred, "sample") else pred
    weights = None
    if snr_gamma is not None:
        weights = min_snr_weights(scheduler, timesteps.cpu(), snr_gamma, official=snr_official).to(dev)
    t = adapter.project_llm(llm_vecs) if llm_vecs is not None else None
    return sur_loss(
        out,
        complex_states,
        t,
        pred,
        target,
        llm_weight,
        prompt_weight,
        temperature=temperature,
        kd_direction=kd_direction,
        sample_weights=weights,
    )


def build_teacher_cache(
    prompts: Sequence[str],
    path: str | os.PathLike,
    load_teacher: Callable[[], tuple],
    layer: int = -1,
    pooling: str = "mean",
) -> dict[str, torch.Tensor]:
    """The ``{prompt: LLM vector}`` cache, built once and stored atomically at ``path``.

    A later call with the same file returns the stored vectors without loading the teacher, as long as
    the file covers every prompt with the same ``layer`` and ``pooling``; otherwise it is rebuilt.

    Args:
        prompts: the simple prompts.
        path: the ``.pt`` file (``{"layer", "pooling", "vectors": {prompt: (D,)}}``).
        load_teacher: returns ``(tokenizer, model)`` (e.g. :func:`~attnkit.generative.encoders.load_smollm2`).
        layer: index into the teacher's ``hidden_states``.
        pooling: ``"mean"`` or ``"last"`` (:func:`~attnkit.generative.encoders.pooled_hidden_states`).

    Returns:
        The dict of float32 vectors.
    """
    from .encoders import build_prompt2vec

    path = Path(path)
    if path.is_file():
        stored = safe_torch_load(path, what="SUR-adapter teacher cache")
        vecs = stored.get("vectors", {})
        if (
            stored.get("layer") == layer
            and stored.get("pooling") == pooling
            and all(p in vecs for p in prompts)
        ):
            return vecs
    tok, model = load_teacher()
    vecs = build_prompt2vec(list(prompts), model, tok, layer=layer, pooling=pooling)
    atomic_torch_save({"layer": layer, "pooling": pooling, "vectors": vecs}, path)
    return vecs
