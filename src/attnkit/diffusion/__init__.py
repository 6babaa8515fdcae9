"""Diffusion in attnkit: ScaleLong, DDPM, proxy FID, stability diagnostics, latent classifier guidance.

ScaleLong's long-skip scaling, DDPM training on diffusers' schedulers, offline sample quality (proxy FID),
training-stability diagnostics, and latent classifier guidance (LCG: a latent DDPM, time-dependent latent
classifiers, guided sampling and linear-arithmetic edits; the Fashion-MNIST autoencoder demo stays in
:mod:`attnkit.diffusion.latent_guidance_fashion`).

Three lines apply ScaleLong to a diffusers UNet you already have::

    from attnkit.diffusion import apply_scalelong
    handle = apply_scalelong(unet, "cs", kappa=0.5)   # skip i multiplied by 0.5**(i-1), outermost first
    ...; handle.remove()                              # back to the plain UNet, bit for bit

diffusers is the optional extra ``attnkit[diffusion]``; it is imported only where it is needed.

Reference:
    ScaleLong, Huang et al., NeurIPS 2023, arXiv 2310.13545, https://github.com/sail-sg/ScaleLong.
    Latent classifier guidance, arXiv 2304.12536 (no official code).
"""

from . import latent_guidance, metrics
from .data import diffusion_images
from .ddpm import DDPMSchedule, ddpm_loss
from .diagnostics import SUMMARY_KEYS, StabilityMonitor, stability_summary, steps_to_target
from .latent_guidance import *  # noqa: F403  (the names of ``latent_guidance.__all__``)
from .metrics import *  # noqa: F403  (the names of ``metrics.__all__``)
from .recipe import BACKBONES, build_backbone, build_optimizer, feature_module, make_ema, save_image_grid
from .scalelong import LSC_SCALINGS, LSCGate, ScaleLongHandle, apply_scalelong, lsc_coefficients
from .uvit import UViT, timestep_embedding, uvit_small_cifar10, uvit_tiny

__all__ = [
    # ScaleLong
    "LSC_SCALINGS",
    "lsc_coefficients",
    "LSCGate",
    "apply_scalelong",
    "ScaleLongHandle",
    # backbones
    "UViT",
    "uvit_small_cifar10",
    "uvit_tiny",
    "timestep_embedding",
    "BACKBONES",
    "build_backbone",
    "feature_module",
    # DDPM on diffusers' schedulers
    "DDPMSchedule",
    "ddpm_loss",
    # training pieces
    "build_optimizer",
    "make_ema",
    "diffusion_images",
    "save_image_grid",
    # sample quality
    *metrics.__all__,
    # diagnostics
    "StabilityMonitor",
    "stability_summary",
    "steps_to_target",
    "SUMMARY_KEYS",
    # latent classifier guidance
    *latent_guidance.__all__,
]
