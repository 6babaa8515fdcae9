"""ADASR two-stage training, and the fusion metrics (PSNR, SAM, ERGAS, CC, RMSE).

Stage 1 learns the degradations with the rotation augmentor; stage 2 the spectral up-mapping.

Reference:
    Qin, Fang, Lu, Lin, Shi, "ADASR: An Adversarial Auto-Augmentation Framework for Hyperspectral and
    Multispectral Data Fusion", IEEE GRSL, arXiv 2310.07255, code github.com/fangfang11-plog/ADASR
    (``model/sr_model.py``, ``config.py``, ``utils/compute_metrics.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..train.build import check_finite_loss
from .adasr_nets import LearnablePSF, LearnableSRF, RotationAugmentor, SpectralUpNet, rotate

__all__ = ["ADASRConfig", "ADASRResult", "fit_adasr", "hsi_metrics"]

_AUGMENT = ("learned", "random", "none")
_OBJECTIVE = ("adversarial", "cooperative")
_SUPERVISION = ("blind", "simulated")


@dataclass
class ADASRConfig:
    """Schedule and switches of :func:`fit_adasr` (defaults: the official Houston 2018 run).

    Attributes:
        stage1_iters: degradation-learning iterations (one full-image step each).
        stage1_decay_from: iteration from which stage-1 learning rates decay linearly to 0.
        lr_degrade: Adam lr of the PSF and SRF nets.
        lr_aug: Adam lr of the augmentor (betas (0.9, 0.999), eps 1e-16, weight decay 1e-16).
        stage2_iters: up-mapping iterations.
        stage2_decay_from: iteration from which the stage-2 lr decays linearly to 0.
        lr_up: Adam lr of the up-mapping net.
        spectral_weight: weight of ‖D_y(U(Z)) − Z‖₁ in stage 2.
        augment: ``"learned"`` (the augmentor G), ``"random"`` (θ ~ U(−π, π)), ``"none"`` (UDALN-style).
        augment_objective: ``"adversarial"`` ascends ℓ_G (the paper); ``"cooperative"`` descends it (the code).
        supervision: ``"blind"`` fits D_y(Y) to D_z(Z) (UDALN's consistency); ``"simulated"`` fits the
            simulator's true LR-MSI targets (the code; it leaks the true PSF/SRF).
        srf_norm_grad: gradient through the SRF normalisation (``False``: official).
        max_angle: the augmentor's bound (π; the official code uses 3.14).
        augmentor_widths: the augmentor's eight conv widths (the official ones by default; smaller ones
            make CPU-scale experiments affordable).
        seed: seeds the nets and the random angles.
    """

    stage1_iters: int = 40000
    stage1_decay_from: int = 10000
    lr_degrade: float = 8e-4
    lr_aug: float = 1e-4
    stage2_iters: int = 200000
    stage2_decay_from: int = 20000
    lr_up: float = 1.3e-3
    spectral_weight: float = 0.3
    augment: str = "learned"
    augment_objective: str = "adversarial"
    supervision: str = "blind"
    srf_norm_grad: bool = False
    max_angle: float = math.pi
    augmentor_widths: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512)
    seed: int = 2

    def __post_init__(self):
        for name, allowed in (
            ("augment", _AUGMENT),
            ("augment_objective", _OBJECTIVE),
            ("supervision", _SUPERVISION),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.stage1_iters < 0 or self.stage2_iters < 0:
            raise ValueError("stage1_iters and stage2_iters must be >= 0")


@dataclass
class ADASRResult:
    """What :func:`fit_adasr` returns.

    Attributes:
        x_hat: the fused HR-HSI U(Z), (1, L, H, W).
        psf: the learned PSF, (s, s).
        srf: the learned SRF, (L, M), columns summing to 1.
        history: one dict per logged iteration (stage, iteration, losses, angle).
        nets: the trained ``psf``, ``srf``, ``up`` (and ``augmentor``) modules.
    """

    x_hat: torch.Tensor
    psf: torch.Tensor
    srf: torch.Tensor
    history: list[dict[str, Any]] = field(default_factory=list)
    nets: dict[str, torch.nn.Module] = field(default_factory=dict)


def _linear_decay(total: int, start: int):
    def f(it: int) -> float:
        if it < start:
            return 1.0
        return max(0.0, 1.0 - (it - start) / max(1, total - start))

    return f


def _degradation_loss(dy, dz, y, z, targets, supervision):
    """‖D_y(Y) − M_Y‖₁ + ‖D_z(Z) − M_Z‖₁ (simulated) or ‖D_y(Y) − D_z(Z)‖₁ (blind)."""
    a, b = dy(y), dz(z)
    if supervision == "simulated":
        return F.l1_loss(a, targets[0]) + F.l1_loss(b, targets[1]), (a, b)
    return F.l1_loss(a, b), (a, b)


def _augmentor_objective(dy, dz, yg, zg, targets_g, supervision):
    """ℓ_G = 2·log‖·‖₁ per term, on the rotated pair."""
    a, b = dy(yg), dz(zg)
    if supervision == "simulated":
        return 2 * torch.log(F.l1_loss(a, targets_g[0])) + 2 * torch.log(F.l1_loss(b, targets_g[1]))
    return 2 * torch.log(F.l1_loss(a, b))


def _stage1(y, z, targets, dy, dz, aug, cfg, gen, log_every, history):
    opt_d = torch.optim.Adam([*dy.parameters(), *dz.parameters()], lr=cfg.lr_degrade)
    sch_d = torch.optim.lr_scheduler.LambdaLR(opt_d, _linear_decay(cfg.stage1_iters, cfg.stage1_decay_from))
    if aug is not None:
        opt_g = torch.optim.Adam(
            aug.parameters(), lr=cfg.lr_aug, betas=(0.9, 0.999), eps=1e-16, weight_decay=1e-16
        )
        sch_g = torch.optim.lr_scheduler.LambdaLR(
            opt_g, _linear_decay(cfg.stage1_iters, cfg.stage1_decay_from)
        )
    sign = -1.0 if cfg.augment_objective == "adversarial" else 1.0
    for it in range(cfg.stage1_iters):
        theta = None
        if cfg.augment == "learned":
            theta = aug(y)  # (1,)
            yg, zg = rotate(y, theta), rotate(z, theta)
            tg = None if targets is None else (rotate(targets[0], theta), rotate(targets[1], theta))
            l_g = _augmentor_objective(dy, dz, yg, zg, tg, cfg.supervision)
            opt_g.zero_grad(set_to_none=True)
            (sign * l_g).backward()  # adversarial: ascend ℓ_G; cooperative (the code): descend it
            opt_g.step()
            sch_g.step()
            theta = theta.detach()
        elif cfg.augment == "random":
            theta = (torch.rand(1, generator=gen) * 2 - 1) * math.pi
        loss, _ = _degradation_loss(dy, dz, y, z, targets, cfg.supervision)
        if theta is not None:
            yg, zg = rotate(y, theta).detach(), rotate(z, theta).detach()
            tg = None if targets is None else (rotate(targets[0], theta), rotate(targets[1], theta))
            loss_g, _ = _degradation_loss(dy, dz, yg, zg, tg, cfg.supervision)
            loss = loss + loss_g
        _update(loss, opt_d, sch_d, f"stage 1, iteration {it}")
        if log_every and (it % log_every == 0 or it == cfg.stage1_iters - 1):
            angle = None if theta is None else float(theta.reshape(-1)[0])
            history.append({"stage": 1, "iteration": it, "loss": float(loss.detach()), "angle": angle})


def _update(loss, opt, sch, where: str) -> None:
    """One optimizer and scheduler step on ``loss``, after refusing a non-finite one (``where`` names it)."""
    check_finite_loss(loss, where)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sch.step()


def _stage2(y, z, dy, dz, up, cfg, log_every, history):
    for p in [*dy.parameters(), *dz.parameters()]:
        p.requires_grad_(False)
    opt = torch.optim.Adam(up.parameters(), lr=cfg.lr_up)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, _linear_decay(cfg.stage2_iters, cfg.stage2_decay_from))
    with torch.no_grad():
        dz_z = dz(z)  # (1, M, h, w): frozen, so computed once
    for it in range(cfg.stage2_iters):
        loss = F.l1_loss(up(dz_z), y) + cfg.spectral_weight * F.l1_loss(dy(up(z)), z)
        _update(loss, opt, sch, f"stage 2, iteration {it}")
        if log_every and (it % log_every == 0 or it == cfg.stage2_iters - 1):
            history.append({"stage": 2, "iteration": it, "loss": float(loss.detach()), "angle": None})


def fit_adasr(
    Y: torch.Tensor,  # noqa: N803 (the field's notation)
    Z: torch.Tensor,  # noqa: N803
    srf_supports: Sequence[tuple[int, int]],
    scale: int,
    config: ADASRConfig | None = None,
    targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    log_every: int = 100,
) -> ADASRResult:
    """Fuse one LR-HSI/HR-MSI pair: learn PSF and SRF (stage 1, with rotation augmentation), then U (stage 2).

    Stage 1, per iteration: the augmentor step on ℓ_G = 2·log‖D_y(Y_G) − rot(M_Y)‖₁ + 2·log‖D_z(Z_G) −
    rot(M_Z)‖₁ (ascended when adversarial), then the degradation step on ℓ_D = ‖D_y(Y) − M_Y‖₁ +
    ‖D_z(Z) − M_Z‖₁ plus the same on the detached rotated pair. Stage 2 freezes D_y, D_z and fits
    ℓ_U = ‖U(D_z(Z)) − Y‖₁ + 0.3·‖D_y(U(Z)) − Z‖₁; X̂ = U(Z).

    Args:
        Y: the LR-HSI.
        Z: the HR-MSI.
        srf_supports: the HSI band range of every MSI band (:func:`attnkit.data.hsi.srf_supports`).
        scale: the spatial factor s.
        config: schedule and switches (default :class:`ADASRConfig`).
        targets: ``(M_Y, M_Z)``, the simulator's LR-MSI targets; required for ``supervision="simulated"``.
        log_every: history every this many iterations (0: none).

    Shape:
        Y (1, L, H/s, W/s), Z (1, M, H, W), targets (1, M, H/s, W/s) each; x_hat (1, L, H, W).

    Returns:
        :class:`ADASRResult`.

    Raises:
        ValueError: shapes do not agree, or ``supervision="simulated"`` without ``targets``.

    Reference:
        ADASR (arXiv 2310.07255), ``model/sr_model.py``.

    Deviations:
        ``augment_objective="adversarial"`` (default) ascends ℓ_G as the paper says; the official code
        descends it (``"cooperative"``). ``supervision="blind"`` (default) replaces the simulator's true
        targets by the consistency ‖D_y(Y) − D_z(Z)‖₁ (and its rotated version in the augmented term),
        because the official targets use the true PSF/SRF. The learning rates decay exactly to 0 (the
        official code skips the augmentor's decay on logging iterations). One Adam over both degradation
        nets equals the official two (Adam is per-parameter).
    """
    cfg = config or ADASRConfig()
    if Y.dim() != 4 or Z.dim() != 4 or Y.shape[0] != 1 or Z.shape[0] != 1:
        raise ValueError(f"Y and Z must be (1, C, H, W), got {tuple(Y.shape)} and {tuple(Z.shape)}")
    if Z.shape[-2] != Y.shape[-2] * scale or Z.shape[-1] != Y.shape[-1] * scale:
        raise ValueError(f"Z {tuple(Z.shape)} must be scale={scale} times Y {tuple(Y.shape)} spatially")
    if len(srf_supports) != Z.shape[1]:
        raise ValueError(f"srf_supports has {len(srf_supports)} bands, Z has {Z.shape[1]}")
    if cfg.augment == "learned":
        h, w = Y.shape[-2:]
        for _ in range(4):  # the augmentor's four stride-2 convs
            h, w = (h + 1) // 2, (w + 1) // 2
        if h * w < 2:
            raise ValueError(
                f'augment="learned" needs an LR-HSI of at least 9×17 pixels (got {tuple(Y.shape[-2:])}): '
                "the augmentor's last BatchNorm needs more than one value per channel"
            )
    if cfg.supervision == "simulated" and targets is None:
        raise ValueError('supervision="simulated" needs targets=(M_Y, M_Z) from the simulator')
    targets = None if cfg.supervision == "blind" else (targets[0].float(), targets[1].float())
    Y, Z = Y.float(), Z.float()  # noqa: N806
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        dz = LearnablePSF(scale)
        dy = LearnableSRF(srf_supports, Y.shape[1], norm_grad=cfg.srf_norm_grad)
        up = SpectralUpNet(Z.shape[1], Y.shape[1])
        aug = (
            RotationAugmentor(Y.shape[1], cfg.augmentor_widths, max_angle=cfg.max_angle)
            if cfg.augment == "learned"
            else None
        )
        history: list[dict[str, Any]] = []
        _stage1(Y, Z, targets, dy, dz, aug, cfg, gen, log_every, history)
        _stage2(Y, Z, dy, dz, up, cfg, log_every, history)
    with torch.no_grad():
        x_hat = up(Z)
        nets = {"psf": dz, "srf": dy, "up": up}
        if aug is not None:
            nets["augmentor"] = aug
        return ADASRResult(x_hat, dz.kernel.detach().clone(), dy.matrix().detach(), history, nets)


def _as_lhw(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"{name} must be (L, H, W) or (1, L, H, W), got {tuple(x.shape)}")
    return x.detach().to(torch.float64).cpu()


def hsi_metrics(x: torch.Tensor, x_hat: torch.Tensor, scale: int) -> dict[str, float]:
    """PSNR, SAM, ERGAS, CC and RMSE of a fused cube against its reference (the ADASR/UDALN formulas).

    - PSNR: mean over bands of 10·log10(max(X_b)² / MSE_b) (each band's own peak), dB; ``inf`` when exact.
    - SAM: mean over pixels of arccos(⟨x, x̂⟩ / (‖x‖‖x̂‖)), degrees (a zero spectrum counts as 90°).
    - ERGAS: (100/s)·√((1/L)·Σ_b MSE_b / mean(X_b)²).
    - CC: mean over bands of Pearson's correlation.
    - RMSE: √(mean(err²)) over all entries.

    Args:
        x: the reference X.
        x_hat: the estimate.
        scale: the spatial factor s (ERGAS).

    Shape:
        x, x_hat: (L, H, W) or (1, L, H, W).

    Returns:
        ``dict(psnr, sam_deg, ergas, cc, rmse)`` as floats.

    Raises:
        ValueError: shapes differ.

    Reference:
        ADASR (arXiv 2310.07255), ``utils/compute_metrics.py``.

    Deviations:
        The official SAM divides by ‖x‖‖x̂‖ + 1e-7 and can return NaN when a cosine rounds above 1; we
        compute the same angle as 2·atan2(‖u − v‖, ‖u + v‖) of the unit spectra u, v, which is never NaN
        and gives exactly 0 for x̂ = x.
    """
    x, xh = _as_lhw(x, "x"), _as_lhw(x_hat, "x_hat")
    if x.shape != xh.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(xh.shape)} differ")
    err = xh - x
    mse_b = (err**2).flatten(1).mean(1)  # (L,)
    peak_b = x.flatten(1).max(1).values
    with torch.no_grad():
        psnr_b = torch.where(mse_b > 0, 10 * torch.log10(peak_b**2 / mse_b), torch.full_like(mse_b, math.inf))
    ux = x / x.norm(dim=0, keepdim=True).clamp_min(1e-12)  # unit spectra (zero pixels stay 0)
    uh = xh / xh.norm(dim=0, keepdim=True).clamp_min(1e-12)
    # arccos(⟨u, v⟩) written as 2·atan2(‖u − v‖, ‖u + v‖): the same angle, exact near 0° and 180°
    sam = torch.rad2deg(2 * torch.atan2((ux - uh).norm(dim=0), (ux + uh).norm(dim=0))).mean()
    ergas = (100.0 / scale) * torch.sqrt((mse_b / x.flatten(1).mean(1) ** 2).mean())
    xc = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    hc = xh.flatten(1) - xh.flatten(1).mean(1, keepdim=True)
    cc_b = (xc * hc).sum(1) / (xc.norm(dim=1) * hc.norm(dim=1))
    return {
        "psnr": float(psnr_b.mean()),
        "sam_deg": float(sam),
        "ergas": float(ergas),
        "cc": float(torch.nanmean(cc_b)),
        "rmse": float(torch.sqrt((err**2).mean())),
    }
