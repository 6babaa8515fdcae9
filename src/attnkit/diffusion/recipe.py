"""The pieces a ScaleLong training run is made of: backbones, the official optimizer recipe, EMA, PNG grids.

The trainer (:mod:`attnkit.diffusion.train`), the CLI and ``benchmarks/scalelong_ddpm.py`` all build their
runs from these functions, so every run uses one recipe.

Reference:
    ScaleLong, arXiv 2310.13545, https://github.com/sail-sg/ScaleLong (``cifar10_config.py``: AdamW lr 2e-4,
    weight decay 0.03, betas (0.99, 0.999), linear warm-up, EMA).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .._optional import require
from .scalelong import apply_scalelong, check_lsc_scaling
from .uvit import UViT, uvit_tiny

__all__ = ["BACKBONES", "build_backbone", "feature_module", "build_optimizer", "make_ema", "save_image_grid"]

BACKBONES = ("uvit-tiny", "uvit-tiny16", "unet-tiny", "unet-small")
"""Backbone names: U-ViT tiny at depth 12 (N = 6) and 16 (N = 8), and diffusers' UNet2DModel (32, 64)
(2 levels, 2 resnets per level) and (16, 32, 64) (3 levels, 1 resnet per level; the Fashion-MNIST run)."""

_UNETS = {  # name: (block_out_channels, layers_per_block)
    "unet-tiny": ((32, 64), 2),
    "unet-small": ((16, 32, 64), 1),
}


def build_backbone(
    name: str,
    *,
    img_size: int,
    in_chans: int = 1,
    lsc_scaling: str = "none",
    kappa: float = 0.5,
    patch_size: int | None = None,
) -> nn.Module:
    """A small denoiser ``model(x_t, t) -> ε̂`` with ScaleLong applied.

    Args:
        name: ``"uvit-tiny"`` (D 64, depth 12, 4 heads), ``"uvit-tiny16"`` (depth 16), ``"unet-tiny"``
            (diffusers ``UNet2DModel``, block_out_channels (32, 64), 2 layers per block, GroupNorm 8; N = 6
            skips, 917,889 parameters) or ``"unet-small"`` ((16, 32, 64), 1 layer per block, GroupNorm 8;
            N = 6 skips, 636,465 parameters; ``img_size`` divisible by 4, e.g. 28).
        img_size: H = W of the data.
        in_chans: C.
        lsc_scaling: ScaleLong variant (see :data:`attnkit.diffusion.LSC_SCALINGS`).
        kappa: κ for ``"cs"``.
        patch_size: U-ViT patch (default 2 for 8×8 images, else 4).

    Returns:
        The model; for the ``"unet-*"`` backbones ScaleLong is applied with :func:`apply_scalelong` and its handle is
        kept as ``model._attnkit_scalelong``.

    Raises:
        ValueError: an unknown ``name`` (the message lists the names) or a bad ``lsc_scaling``/``kappa``.
    """
    check_lsc_scaling(lsc_scaling, kappa)
    if name in ("uvit-tiny", "uvit-tiny16"):
        p = patch_size or (2 if img_size <= 8 else 4)
        depth = 16 if name == "uvit-tiny16" else 12
        return uvit_tiny(
            img_size=img_size,
            patch_size=p,
            in_chans=in_chans,
            depth=depth,
            lsc_scaling=lsc_scaling,
            kappa=kappa,
        )
    if name in _UNETS:
        diffusers = require("diffusers", extra="diffusion")
        channels, layers = _UNETS[name]
        unet = diffusers.UNet2DModel(
            sample_size=img_size,
            in_channels=in_chans,
            out_channels=in_chans,
            block_out_channels=channels,
            layers_per_block=layers,
            down_block_types=("DownBlock2D",) * len(channels),
            up_block_types=("UpBlock2D",) * len(channels),
            norm_num_groups=8,
        )
        apply_scalelong(unet, lsc_scaling, kappa)
        return unet
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


def feature_module(model: nn.Module) -> nn.Module:
    """The module whose input is ScaleLong's output-feature diagnostic.

    ``model.norm`` for U-ViT, ``model.conv_norm_out`` for diffusers UNets.

    Raises:
        TypeError: a model that has neither.
    """
    if isinstance(model, UViT):
        return model.norm
    if getattr(model, "conv_norm_out", None) is not None:
        return model.conv_norm_out
    raise TypeError(f"{type(model).__name__} has neither a U-ViT 'norm' nor a diffusers 'conv_norm_out'")


def build_optimizer(
    model: nn.Module,
    lr: float = 2e-4,
    weight_decay: float = 0.03,
    betas: tuple[float, float] = (0.99, 0.999),
    warmup_steps: int = 100,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The official recipe: AdamW (lr 2e-4, wd 0.03, betas (0.99, 0.999)) with a linear warm-up.

    Args:
        model: its parameters (LS gates included) are optimised.
        lr: AdamW's learning rate (peak, after warm-up).
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's betas.
        warmup_steps: linear warm-up from lr/warmup_steps to lr (the official 2,500; 100 at CPU scale).

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after every ``optimizer.step()``.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    w = max(1, int(warmup_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / w))
    return opt, sched


def make_ema(model: nn.Module, decay: float = 0.999) -> torch.optim.swa_utils.AveragedModel:
    """EMA weights with torch's ``AveragedModel``, with diffusers' EMA warm-up.

    The decay at update n is ``min(decay, (1 + n)/(10 + n))`` (as diffusers' ``EMAModel``), so a short CPU
    run is not dominated by its initial weights. Update with ``ema.update_parameters(model)`` after each
    optimizer step; sample with ``ema.module``.

    Args:
        model: the trained model.
        decay: the EMA decay (0.999 in the CPU experiment).

    Returns:
        The averaged copy (buffers are averaged too).
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1), got {decay}")

    @torch.no_grad()
    def avg(ema_params, params, num_averaged):
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=avg, use_buffers=False)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Write images in [−1, 1] as one PNG grid, atomically.

    Args:
        images: (N, C, H, W) in [−1, 1] (clamped).
        path: the PNG file.
        nrow: images per row.

    Returns:
        The path.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(
        ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2), nrow=nrow, padding=2, pad_value=1.0
    )
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")  # (H, W, 3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
