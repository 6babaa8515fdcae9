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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._io import atomic_torch_save, safe_torch_load
from .._optional import require
from .sur_adapter import SURAdapter, SURLoss, sur_loss

__all__ = [
    "min_snr_weights",
    "sur_step",
    "build_teacher_cache",
    "toy_unet",
    "SURTrainConfig",
    "text_states",
    "load_demo_unet",
    "train_sur_adapter",
]


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


# --------------------------------------------------------------------------- the CPU demo (SURD-mini)


def toy_unet(cross_attention_dim: int = 384, sample_size: int = 16):
    """The CPU demo's pixel-space ``UNet2DConditionModel`` (1,165,091 parameters at d = 384).

    Shape:
        (B, 3, 16, 16) noisy images, (B,) timesteps, (B, T, d) context -> (B, 3, 16, 16).
    """
    diffusers = require("diffusers", extra="llm")
    return diffusers.UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


@dataclass
class SURTrainConfig:
    """``attnkit sur train`` on the SURD-mini CPU demo (MiniLM text encoder, SmolLM2 teacher, toy UNet).

    Stage A (``pretrain_steps > 0`` or no ``unet.pt`` in ``out_dir``) trains the toy UNet on the complex
    prompts and freezes it; stage B trains only the adapter on the simple prompts.

    Attributes:
        out_dir: run folder (``unet.pt``, ``text_states.pt``, ``teacher.pt``, ``adapter.pt``, ``metrics.json``).
        steps: adapter optimiser steps.
        batch_size: samples per micro-batch.
        grad_accum: micro-batches per optimiser step.
        lr: AdamW learning rate (weight decay 1e-2, clip 1.0, as ``run.sh``).
        pretrain_steps: toy-UNet steps (stage A; skipped when ``unet.pt`` exists).
        pretrain_lr: its learning rate.
        cond_dropout: stage A's probability of the empty prompt (for classifier-free guidance).
        n_train: SURD-mini training images.
        max_length: text tokens per prompt.
        bf16: autocast the UNet and adapter forward in bfloat16.
        snr_gamma: Min-SNR γ, or None.
        detach_diffusion_loss, batch_first, kd_direction, adapter_weight, llm_weight, prompt_weight:
            the official-vs-fixed options (see :mod:`attnkit.generative.sur_adapter`).
        teacher: ``"smollm2"`` (the bundled SmolLM2-135M) or ``"none"`` (no LLM term).
        teacher_layer: hidden-state index of the teacher (−1 = layer 30 of SmolLM2).
        seed: the run's seed (data order, noise, adapter init, projector).
        threads: torch CPU threads (None: all).
    """

    out_dir: str = "runs/sur"
    steps: int = 300
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    pretrain_steps: int = 2000
    pretrain_lr: float = 2e-3
    cond_dropout: float = 0.1
    n_train: int = 2000
    max_length: int = 24
    bf16: bool = False
    snr_gamma: float | None = None
    detach_diffusion_loss: bool = False
    batch_first: bool = True
    kd_direction: str = "official"
    adapter_weight: float = 0.1
    llm_weight: float = 1e-5
    prompt_weight: float = 1e-5
    teacher: str = "smollm2"
    teacher_layer: int = -1
    seed: int = 0
    threads: int | None = None

    @classmethod
    def official(cls, **kw) -> SURTrainConfig:
        """The official code's behaviour: batch-mixing encoder, detached diffusion loss."""
        return cls(**{"batch_first": False, "detach_diffusion_loss": True, **kw})


def text_states(
    prompts: Sequence[str], path: str | os.PathLike, max_length: int = 24
) -> dict[str, torch.Tensor]:
    """MiniLM states ``{prompt: (max_length, 384)}`` of every prompt, cached atomically at ``path``."""
    from .encoders import encode_prompts, load_minilm

    path = Path(path)
    if path.is_file():
        stored = safe_torch_load(path, what="text-state cache")
        if stored.get("max_length") == max_length and all(p in stored["states"] for p in prompts):
            return stored["states"]
    tok, model = load_minilm()
    unique = list(dict.fromkeys(prompts))
    states = {}
    for i in range(0, len(unique), 64):
        chunk = unique[i : i + 64]
        for p, s in zip(chunk, encode_prompts(tok, model, chunk, max_length)):
            states[p] = s.clone()
    atomic_torch_save({"max_length": max_length, "states": states}, path)
    return states


def _demo_prompts():
    from ..data.surd import all_scenes, surd_prompts

    pairs = [surd_prompts(*sc) for sc in all_scenes()]
    return [s for s, _ in pairs], [c for _, c in pairs]


def _pretrain_unet(cfg: SURTrainConfig, data, states, sched, out: Path):
    torch.manual_seed(cfg.seed)
    unet = toy_unet()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.pretrain_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    images = torch.stack([d["image"] for d in data])  # (N, 3, 16, 16)
    ctx = torch.stack([states[d["complex"]] for d in data])  # (N, T, 384)
    empty = states[""]
    log = []
    for _ in range(cfg.pretrain_steps):
        idx = torch.randint(0, len(data), (cfg.batch_size * 4,), generator=g)
        c = ctx[idx].clone()
        drop = torch.rand(len(idx), generator=g) < cfg.cond_dropout
        c[drop] = empty
        x0 = images[idx]
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=c).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        log.append(loss.item())
    atomic_torch_save({"state_dict": unet.state_dict(), "losses": log}, out)
    return unet


def load_demo_unet(path: str | os.PathLike):
    """The frozen toy UNet stored by stage A (eval mode, no gradients)."""
    unet = toy_unet()
    unet.load_state_dict(safe_torch_load(path, what="toy UNet")["state_dict"])
    return unet.eval().requires_grad_(False)


def train_sur_adapter(config: SURTrainConfig | dict[str, Any]) -> dict[str, Any]:
    """Train a SUR-adapter on the SURD-mini demo; stage A (the toy UNet) runs once per ``out_dir``.

    Args:
        config: a :class:`SURTrainConfig` or a dict of its fields.

    Returns:
        ``{"adapter": SURAdapter, "unet", "losses": [...], "out_dir"}``; ``adapter.pt`` holds the adapter's
        ``state_dict`` (with the projector) and the config.

    Raises:
        ImportError: diffusers/transformers (``attnkit[llm]``), the MiniLM wheel, or (with
            ``teacher="smollm2"``) gguf / the SmolLM2 wheel is missing.
    """
    from .._config import dataclass_from_dict
    from .._runtime import set_threads
    from ..data.surd import surd_mini
    from .encoders import load_smollm2

    cfg = config if isinstance(config, SURTrainConfig) else dataclass_from_dict(SURTrainConfig, config)
    set_threads(cfg.threads)
    diffusers = require("diffusers", extra="llm")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000)
    data = surd_mini(cfg.n_train, seed=1234)  # the same training images for every arm and seed
    simple, complex_ = _demo_prompts()
    states = text_states(["", *simple, *complex_], out / "text_states.pt", cfg.max_length)
    unet_path = out / "unet.pt"
    unet = (
        load_demo_unet(unet_path)
        if unet_path.is_file()
        else _pretrain_unet(cfg, data, states, sched, unet_path)
    )
    unet.eval().requires_grad_(False)
    vecs = None
    if cfg.teacher == "smollm2":
        vecs = build_teacher_cache(simple, out / "teacher.pt", load_smollm2, layer=cfg.teacher_layer)
    elif cfg.teacher != "none":
        raise ValueError(f"teacher must be 'smollm2' or 'none', got {cfg.teacher!r}")
    torch.manual_seed(cfg.seed)
    adapter = SURAdapter(
        384,
        adapter_weight=cfg.adapter_weight,
        batch_first=cfg.batch_first,
        llm_dim=576 if vecs is not None else None,
        projector_seed=cfg.seed,
    )
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    g = torch.Generator().manual_seed(cfg.seed + 7)
    images = torch.stack([d["image"] for d in data])
    s_ctx = torch.stack([states[d["simple"]] for d in data])
    c_ctx = torch.stack([states[d["complex"]] for d in data])
    z = torch.stack([vecs[d["simple"]] for d in data]) if vecs is not None else None
    losses = []
    adapter.train()
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        parts = torch.zeros(4)
        for _ in range(cfg.grad_accum):
            idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = sur_step(
                    adapter,
                    unet,
                    sched,
                    images[idx],
                    s_ctx[idx],
                    c_ctx[idx],
                    z[idx] if z is not None else None,
                    detach_diffusion_loss=cfg.detach_diffusion_loss,
                    snr_gamma=cfg.snr_gamma,
                    llm_weight=cfg.llm_weight,
                    prompt_weight=cfg.prompt_weight,
                    kd_direction=cfg.kd_direction,
                    generator=g,
                )
            (loss.total / cfg.grad_accum).backward()
            parts += torch.stack([v.detach().float() for v in loss]) / cfg.grad_accum
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
        opt.step()
        losses.append(dict(zip(("total", "diffusion", "llm", "prompt"), parts.tolist())))
    adapter.eval()
    atomic_torch_save(
        {"state_dict": adapter.state_dict(), "config": asdict(cfg)}, out / f"adapter_seed{cfg.seed}.pt"
    )
    return {"adapter": adapter, "unet": unet, "losses": losses, "out_dir": str(out), "states": states}
