"""ADASR: adversarial auto-augmentation for hyperspectral–multispectral (HSI–MSI) fusion.

A single-scene, unsupervised fusion method: a learned PSF (D_z) and SRF (D_y) are fitted to the LR-HSI Y
and HR-MSI Z while an augmentor G rotates the pair, then a spectral up-mapping U (MSI → HSI) is fitted
through the frozen degradations; the fused HR-HSI is X̂ = U(Z). The degradation and up-mapping nets come
from UDALN.

Usage::

    from attnkit.data.hsi import gaussian_srf, simulate_pair, srf_supports, synthetic_scene
    from attnkit.tasks.adasr import ADASRConfig, fit_adasr, hsi_metrics

    x = synthetic_scene(120)
    srf = gaussian_srf(46, 8)
    pair = simulate_pair(x, 4, srf)
    res = fit_adasr(pair["Y"], pair["Z"], srf_supports(srf), 4, ADASRConfig(stage1_iters=4000, ...))
    hsi_metrics(x, res.x_hat, 4)

Reference:
    Qin, Fang, Lu, Lin, Shi, "ADASR: An Adversarial Auto-Augmentation Framework for Hyperspectral and
    Multispectral Data Fusion", IEEE GRSL, arXiv 2310.07255, code github.com/fangfang11-plog/ADASR.

Deviations (each also in the docstring concerned):
    - ``augment_objective="adversarial"`` (default, the paper) ascends the augmentor objective; the
      official code descends it (``"cooperative"``).
    - ``supervision="blind"`` (default) replaces the simulator's true LR-MSI targets (which leak the true
      PSF/SRF) by UDALN's consistency ‖D_y(Y) − D_z(Z)‖₁; ``"simulated"`` reproduces the code.
    - The augmentor is Conv2d (the official Conv3d on a depth-1 volume is the same function);
      :func:`load_official_augmentor` maps official weights. The angle bound is π (official 3.14).
    - SAM clamps the cosine (never NaN); learning rates decay exactly to 0.
"""

from __future__ import annotations

from . import adasr_fit, adasr_nets
from .adasr_fit import *  # noqa: F403  (the names of ``adasr_fit.__all__``)
from .adasr_nets import *  # noqa: F403  (the names of ``adasr_nets.__all__``)

__all__ = [*adasr_nets.__all__, *adasr_fit.__all__]
