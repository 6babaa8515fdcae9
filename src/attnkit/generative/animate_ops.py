"""AnimateZoo's subject-alignment operators: a Laplacian detail booster and a scale-information remover.

AnimateZoo (Anima2) animates a target animal with the motion of a source video of another species. Its
subject alignment has a *Laplacian detail booster* (appearance: amplify the high-frequency bands of the
reference image) and a *scale-information remover* (shape: the source subject's size and position are
normalised away before its masks condition the generation). No code or formulas were released; every
operator here is an **[inferred]** reading of the abstract, written as a reusable image operator.

The pyramid is Burt & Adelson's: ``G_0 = x``, ``G_{k+1} = pyrdown(G_k)``, ``L_k = G_k − up(G_{k+1})``,
the last level the Gaussian residual. Down-sampling is kornia's ``pyrdown`` (5×5 binomial blur, then
halve); ``up`` resizes bilinearly to the finer level's exact size and blurs with the same kernel, which is
kornia's ``pyrup`` whenever the size exactly doubles.

Reference:
    AnimateZoo: Zero-shot Video Generation of Cross-Species Animation via Subject Alignment, Xu et al.,
    arXiv 2404.04946 (ICASSP 2025 as "Anima2"); no official code.
    The Laplacian Pyramid as a Compact Image Code, Burt & Adelson, IEEE Trans. Communications 1983.

Deviations:
    kornia's ``build_laplacian_pyramid`` pads any image whose sides are not divisible by
    ``2**(levels-1)`` (e.g. a 300×451 photo) up to a power of two, so its levels live on a padded grid;
    here every level keeps the floor-halved size of the one above and the pyramid inverts exactly at
    any size. On sizes where kornia does not pad, both pyramids are equal (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit._optional import require

__all__ = ["laplacian_pyramid", "reconstruct_pyramid", "laplacian_boost", "normalize_scale"]

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _kornia():
    return require("kornia", extra="vision")


def _check_image(img: torch.Tensor, name: str = "img") -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or not img.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point (N, C, H, W) tensor, got {getattr(img, 'shape', type(img))}"
        )


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size``, then the pyramid's 5×5 binomial blur (kornia's ``pyrup`` at 2×)."""
    kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(x)[None]  # (1, 5, 5)
    return _kornia().filters.filter2d(
        F.interpolate(x, size=size, mode="bilinear", align_corners=False), kernel, "reflect"
    )


def laplacian_pyramid(img: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """Laplacian pyramid: ``levels − 1`` band-pass images and the Gaussian residual.

    Args:
        img: images.
        levels: number of returned tensors (kornia's ``max_level`` convention).

    Shape:
        ``img (N, C, H, W)`` → ``[(N, C, H, W), (N, C, ⌊H/2⌋, ⌊W/2⌋), …]``.

    Returns:
        ``[L_0, …, L_{levels−2}, G_{levels−1}]``.

    Raises:
        TypeError: ``img`` is not a float ``(N, C, H, W)`` tensor.
        ValueError: ``levels`` < 1 or the image too small for that many halvings.
    """
    _check_image(img)
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if min(img.shape[-2:]) < 2 ** (levels - 1):
        raise ValueError(f"image {tuple(img.shape[-2:])} is too small for {levels} levels")
    pyrdown = _kornia().geometry.transform.pyrdown
    gauss = [img]
    for _ in range(levels - 1):
        gauss.append(pyrdown(gauss[-1], border_type="reflect"))
    bands = [g - _up(g_next, tuple(g.shape[-2:])) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return [*bands, gauss[-1]]


def reconstruct_pyramid(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Invert :func:`laplacian_pyramid`: ``G_k = L_k + up(G_{k+1})`` from the residual upward.

    Args:
        pyramid: ``[L_0, …, L_{K−1}, G_K]``.

    Shape:
        Returns the shape of ``pyramid[0]``.

    Returns:
        The image.

    Raises:
        ValueError: an empty pyramid.
    """
    if not pyramid:
        raise ValueError("pyramid must hold at least one level")
    x = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        x = band + _up(x, tuple(band.shape[-2:]))
    return x


def laplacian_boost(img: torch.Tensor, gain: float = 1.5, levels: int = 3) -> torch.Tensor:
    """Laplacian detail booster [inferred]: multiply the band-pass levels by ``gain`` and reconstruct.

    Args:
        img: images.
        gain: detail gain; 1 is the identity, > 1 sharpens, < 1 smooths.
        levels: pyramid levels (as :func:`laplacian_pyramid`).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Returns:
        The boosted images (not clamped).

    Raises:
        ValueError: ``gain`` < 0.
    """
    if gain < 0:
        raise ValueError(f"gain must be >= 0, got {gain}")
    pyr = laplacian_pyramid(img, levels)
    return reconstruct_pyramid([band * gain for band in pyr[:-1]] + [pyr[-1]])


def normalize_scale(
    masks: torch.Tensor, size: int = 64, fill: float = 0.75, frames: torch.Tensor | None = None
) -> (
    tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
):
    """Scale-information remover [inferred]: centre each frame's mask box and rescale it isotropically.

    Each frame is warped so that its mask's bounding-box centre lands on the canvas centre and the box's
    longer side spans ``fill · size`` pixels: ``dst = scale · src + shift`` (pixel-centre coordinates).

    Args:
        masks: subject masks, values in [0, 1] (foreground > 0.5).
        size: output canvas side in pixels.
        fill: longer box side as a fraction of ``size``.
        frames: optional frames to warp with the same transform.

    Shape:
        ``masks (T, H, W)``, ``frames (T, C, H, W)`` → masks ``(T, size, size)``, ``scale (T,)``,
        ``shift (T, 2)`` as ``(x, y)``, frames ``(T, C, size, size)``.

    Returns:
        ``(masks, scale, shift)``, plus the warped frames when ``frames`` is given. Output masks are
        re-binarised at 0.5.

    Raises:
        ValueError: a frame's mask is empty, bad shapes, or ``fill`` outside (0, 1].
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        raise ValueError(f"masks must be a (T, H, W) tensor, got {getattr(masks, 'shape', type(masks))}")
    if not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    fg = masks > 0.5  # (T, H, W)
    if not fg.flatten(1).any(1).all():
        raise ValueError("every frame's mask must contain foreground (> 0.5)")
    ys = torch.arange(masks.shape[1], device=masks.device)
    xs = torch.arange(masks.shape[2], device=masks.device)
    rows, cols = fg.any(2), fg.any(1)  # (T, H), (T, W)
    y0 = torch.where(rows, ys, masks.shape[1]).amin(1).float()
    y1 = torch.where(rows, ys, -1).amax(1).float()
    x0 = torch.where(cols, xs, masks.shape[2]).amin(1).float()
    x1 = torch.where(cols, xs, -1).amax(1).float()
    extent = torch.maximum(x1 - x0 + 1, y1 - y0 + 1)  # (T,)
    scale = fill * size / extent
    centre = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2], 1)  # (T, 2)
    shift = (size - 1) / 2 - scale[:, None] * centre
    m = torch.zeros(len(masks), 2, 3, device=masks.device)
    m[:, 0, 0], m[:, 1, 1], m[:, :, 2] = scale, scale, shift
    warp = _kornia().geometry.transform.warp_affine
    out = warp(masks[:, None].float(), m, (size, size), align_corners=True)[:, 0]
    out = (out > 0.5).to(masks.dtype)
    if frames is None:
        return out, scale, shift
    if frames.dim() != 4 or len(frames) != len(masks):
        raise ValueError(f"frames must be (T={len(masks)}, C, H, W), got {tuple(frames.shape)}")
    return out, scale, shift, warp(frames.float(), m.to(frames.device), (size, size), align_corners=True)
