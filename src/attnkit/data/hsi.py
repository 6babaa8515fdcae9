"""Hyperspectral data for HSI–MSI fusion: degradations, simulated pairs, synthetic scenes, ``.mat`` loading.

The simulation follows the ADASR/UDALN protocol: a reference cube X is blurred by a Gaussian PSF and
decimated (the LR-HSI Y), and projected by a spectral response function R (the HR-MSI Z = X·R).

Reference:
    Qin, Fang, Lu, Lin, Shi, "ADASR: An Adversarial Auto-Augmentation Framework for Hyperspectral and
    Multispectral Data Fusion", IEEE GRSL, arXiv 2310.07255, code github.com/fangfang11-plog/ADASR
    (``Data_loader.py``); Li et al., "Deep Unsupervised Blind Hyperspectral and Multispectral Data Fusion"
    (UDALN), IEEE GRSL 2022.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from ._common import DatasetFormatError

__all__ = [
    "gaussian_psf",
    "degrade_spatial",
    "degrade_spectral",
    "srf_supports",
    "simulate_pair",
    "synthetic_scene",
    "gaussian_srf",
    "load_mat_scene",
]

_MAT_FORMAT = "a MATLAB .mat file (v5/v7, read by scipy.io.loadmat, or v7.3 HDF5) holding an H×W×L array"

FWHM_PER_SIGMA = 2.35482
"""Full width at half maximum of a Gaussian in units of its standard deviation, 2·√(2·ln 2)."""


def _check_4d(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")


def gaussian_psf(scale: int, sigma: float | None = None) -> torch.Tensor:
    """The Gaussian point-spread function of the ADASR simulator, normalised to sum 1.

    Args:
        scale: the kernel size s (the spatial scale factor).
        sigma: standard deviation in pixels (default ``scale / 2.35482``, i.e. FWHM = s).

    Shape:
        Returns (s, s), float32.

    Returns:
        The kernel, centred at ((s−1)/2, (s−1)/2) like MATLAB's ``fspecial('gaussian')``.

    Raises:
        ValueError: ``scale`` < 1 or ``sigma`` ≤ 0.
    """
    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    sigma = scale / FWHM_PER_SIGMA if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r = torch.arange(int(scale), dtype=torch.float64) - (int(scale) - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float()


def degrade_spatial(x: torch.Tensor, psf: torch.Tensor, scale: int) -> torch.Tensor:
    """Blur every band by ``psf`` (``valid`` convolution) and keep every ``scale``-th pixel.

    Args:
        x: the image.
        psf: the (k, k) kernel (k = s in the official simulator).
        scale: the decimation factor s.

    Shape:
        x (B, L, H, W) → (B, L, (H−k)//s + 1, (W−k)//s + 1), i.e. (B, L, H/s, W/s) for k = s.

    Returns:
        The degraded image (same dtype as ``x``).

    Raises:
        ValueError: ``x`` is not 4-D, ``psf`` is not 2-D, or the image is smaller than the kernel.
    """
    _check_4d(x, "x")
    if psf.dim() != 2:
        raise ValueError(f"psf must be (k, k), got {tuple(psf.shape)}")
    if x.shape[-1] < psf.shape[-1] or x.shape[-2] < psf.shape[-2]:
        raise ValueError(f"x {tuple(x.shape)} is smaller than the psf {tuple(psf.shape)}")
    bands = x.shape[1]
    w = psf.to(x)[None, None].expand(bands, 1, *psf.shape)  # (L, 1, k, k): one kernel per band
    return F.conv2d(x, w, stride=int(scale), groups=bands)


def degrade_spectral(x: torch.Tensor, srf: torch.Tensor) -> torch.Tensor:
    """Project every pixel's spectrum with the spectral response R: Z = X·R.

    Args:
        x: the hyperspectral image.
        srf: R, (L, M); each column (one MSI band) sums to 1 in the official simulator.

    Shape:
        x (B, L, H, W), srf (L, M) → (B, M, H, W).

    Returns:
        The multispectral image.

    Raises:
        ValueError: shapes do not match.
    """
    _check_4d(x, "x")
    if srf.dim() != 2 or srf.shape[0] != x.shape[1]:
        raise ValueError(f"srf must be (L={x.shape[1]}, M), got {tuple(srf.shape)}")
    return torch.einsum("blhw,lm->bmhw", x, srf.to(x))


def srf_supports(srf: torch.Tensor, eps: float = 0.0) -> list[tuple[int, int]]:
    """The contiguous HSI band range [lo_b, hi_b] of every MSI band b, where R > ``eps``.

    Args:
        srf: R, (L, M).
        eps: threshold on the response.

    Returns:
        ``[(lo_0, hi_0), ..., (lo_{M-1}, hi_{M-1})]``, inclusive indices.

    Raises:
        ValueError: ``srf`` is not 2-D or a band has no response above ``eps``.
    """
    if srf.dim() != 2:
        raise ValueError(f"srf must be (L, M), got {tuple(srf.shape)}")
    out = []
    for b in range(srf.shape[1]):
        idx = torch.nonzero(srf[:, b] > eps).flatten()
        if idx.numel() == 0:
            raise ValueError(f"srf band {b} has no response above eps={eps}")
        out.append((int(idx.min()), int(idx.max())))
    return out


def simulate_pair(
    x: torch.Tensor, scale: int, srf: torch.Tensor, psf: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Simulate the LR-HSI, HR-MSI and the two LR-MSI targets from a reference cube.

    Args:
        x: the reference X in [0, 1], (L, H, W) or (1, L, H, W).
        scale: spatial factor s.
        srf: R, (L, M).
        psf: the spatial kernel (default :func:`gaussian_psf` (s)).

    Shape:
        Y (1, L, H/s, W/s), Z (1, M, H, W), M_Y and M_Z (1, M, H/s, W/s).

    Returns:
        ``dict(Y, Z, M_Y, M_Z, psf, srf)``; M_Y = SRF(Y) and M_Z = PSF(Z) are equal up to rounding,
        because the two linear operators act on different axes.

    Raises:
        ValueError: bad shapes.
    """
    if x.dim() == 3:
        x = x[None]
    psf = gaussian_psf(scale) if psf is None else psf
    y = degrade_spatial(x, psf, scale)
    z = degrade_spectral(x, srf)
    return {
        "Y": y,
        "Z": z,
        "M_Y": degrade_spectral(y, srf),
        "M_Z": degrade_spatial(z, psf, scale),
        "psf": psf,
        "srf": srf.to(x),
    }


def gaussian_srf(
    bands: int = 46, msi_bands: int = 8, sigma: float = 3.0, cutoff: float = 1e-3
) -> torch.Tensor:
    """A synthetic spectral response: ``msi_bands`` Gaussians evenly spaced over the HSI bands.

    Args:
        bands: L.
        msi_bands: M.
        sigma: width of each response in bands.
        cutoff: responses below ``cutoff`` × the band's peak are set to 0, so every MSI band has a
            finite contiguous support (:func:`srf_supports`).

    Shape:
        Returns (L, M), float32, each column summing to 1.

    Returns:
        R.

    Raises:
        ValueError: non-positive sizes.
    """
    if bands < 1 or msi_bands < 1 or sigma <= 0:
        raise ValueError(f"need bands, msi_bands >= 1 and sigma > 0, got {bands}, {msi_bands}, {sigma}")
    centres = torch.linspace(sigma, bands - 1 - sigma, msi_bands, dtype=torch.float64)
    idx = torch.arange(bands, dtype=torch.float64)[:, None]
    r = torch.exp(-((idx - centres[None]) ** 2) / (2 * sigma**2))  # (L, M), peak 1 near each centre
    r = torch.where(r >= cutoff * r.max(0, keepdim=True).values, r, torch.zeros_like(r))
    return (r / r.sum(0, keepdim=True)).float()


def _china_crop(size: int) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    img = load_sample_image("china.jpg").astype(np.float64) / 255.0  # (427, 640, 3)
    h, w = img.shape[:2]
    if size > min(h, w):
        raise ValueError(f"size must be <= {min(h, w)} (the china.jpg photo), got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def synthetic_scene(size: int = 120, bands: int = 46, endmembers: int = 5, seed: int = 0) -> torch.Tensor:
    """A linear-mixing hyperspectral scene built on a crop of scikit-learn's ``china.jpg`` (offline).

    Abundances A = softmax(P·[R, G, B, 1] / 0.1) over the endmembers with P ~ N(0, I); each endmember
    spectrum is a sum of 3 Gaussians (random centres, widths 3–10 bands, amplitudes 0.1–1); X = A·E,
    min–max scaled to [0, 1]. [reconstruction: the ADASR CPU experiment's stand-in for Houston 2018.]

    Args:
        size: crop side in pixels (a centred crop of the 427×640 photo).
        bands: L.
        endmembers: number of spectra mixed.
        seed: seeds P and the spectra.

    Shape:
        Returns (bands, size, size), float32.

    Returns:
        The reference cube X.

    Raises:
        ValueError: ``size`` exceeds the photo or sizes are not positive.
    """
    if size < 1 or bands < 1 or endmembers < 1:
        raise ValueError(f"size, bands and endmembers must be >= 1, got {size}, {bands}, {endmembers}")
    rng = np.random.default_rng(seed)
    rgb = _china_crop(size)  # (S, S, 3)
    feats = np.concatenate([rgb, np.ones_like(rgb[..., :1])], -1)  # (S, S, 4)
    logits = feats @ rng.standard_normal((4, endmembers)) / 0.1  # (S, S, E)
    logits -= logits.max(-1, keepdims=True)
    a = np.exp(logits)
    a /= a.sum(-1, keepdims=True)
    lam = np.arange(bands)[None, :]
    spectra = np.zeros((endmembers, bands))
    for _ in range(3):
        c = rng.uniform(0, bands, (endmembers, 1))
        wdt = rng.uniform(3, 10, (endmembers, 1))
        amp = rng.uniform(0.1, 1.0, (endmembers, 1))
        spectra += amp * np.exp(-((lam - c) ** 2) / (2 * wdt**2))
    x = a @ spectra  # (S, S, L)
    x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float()


def _is_hdf5(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        head = f.read(1024)
    return b"\x89HDF\r\n\x1a\n" in head  # the HDF5 signature sits at offset 0 or 512 (MATLAB's userblock)


def _read_h5(path: str | os.PathLike, key: str) -> np.ndarray:
    from attnkit._optional import require

    h5py = require("h5py", extra="tasks", feature="reading MATLAB v7.3 .mat files")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetFormatError(
            f"{os.fspath(path)}: corrupt HDF5 (MATLAB v7.3) data ({e}); expected {_MAT_FORMAT}"
        ) from e
    with f:
        if key not in f:
            raise KeyError(f"{os.fspath(path)} has no variable {key!r}; variables: {sorted(f.keys())}")
        arr = np.asarray(f[key])
    return arr.transpose(tuple(range(arr.ndim))[::-1])  # HDF5 stores MATLAB arrays column-major


def _read_mat(path: str | os.PathLike, key: str) -> np.ndarray:
    """The variable ``key`` of a v5/v7 (scipy) or v7.3 (HDF5) ``.mat`` file; decode errors name the file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except (NotImplementedError, ValueError) as e:  # MATLAB v7.3 is HDF5 (scipy raises NotImplementedError)
        if _is_hdf5(path):
            return _read_h5(path, key)
        raise DatasetFormatError(
            f"{os.fspath(path)}: not a readable .mat file ({e}); expected {_MAT_FORMAT}"
        ) from e
    except (OSError, EOFError, IndexError, TypeError, KeyError) as e:  # truncated or corrupt v5 streams
        raise DatasetFormatError(
            f"{os.fspath(path)}: truncated or corrupt .mat file ({type(e).__name__}: {e}); expected {_MAT_FORMAT}"
        ) from e
    if key not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{os.fspath(path)} has no variable {key!r}; variables: {names}")
    return np.asarray(mat[key])


def load_mat_scene(path: str | os.PathLike, key: str = "REF", normalize: bool = True) -> torch.Tensor:
    """Read a reference cube from a MATLAB ``.mat`` file (Houston 2018 ``REF.mat``, CAVE, Chikusei).

    v5/v7 files are read with ``scipy.io.loadmat``; v7.3 (HDF5) files with h5py (attnkit[tasks]).

    Args:
        path: the ``.mat`` file.
        key: the variable holding the H×W×L cube (``REF`` in the ADASR repository).
        normalize: divide by the cube's maximum, as the official loader scales X to [0, 1].

    Shape:
        Returns (L, H, W), float32.

    Returns:
        The cube, bands first.

    Raises:
        FileNotFoundError: no such file.
        KeyError: the variable is missing (the message lists the variables present).
        DatasetFormatError: (a ``ValueError``) the file is truncated, corrupt or not a ``.mat`` file;
            the message names it and the formats read.
        ValueError: the variable is not a 3-D array.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such .mat file: {os.fspath(path)}")
    arr = _read_mat(path, key)
    if arr.ndim != 3:
        raise ValueError(f"variable {key!r} must be an H×W×L array, got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32).transpose(2, 0, 1)))
    if normalize:
        peak = float(x.max())
        if peak > 0 and math.isfinite(peak):
            x = x / peak
    return x
