"""ADASR networks: learnable PSF and SRF, the spectral up-sampling net, the rotation augmentor.

Reference:
    Qin, Fang, Lu, Lin, Shi, "ADASR: An Adversarial Auto-Augmentation Framework for Hyperspectral and
    Multispectral Data Fusion", IEEE GRSL, arXiv 2310.07255, code github.com/fangfang11-plog/ADASR
    (``arch/spatial_downsample.py``, ``arch/spectral_downsample.py``, ``arch/spectral_upsample.py``,
    ``arch/augmentor.py``). The degradation and up-mapping nets come from UDALN (Li et al., GRSL 2022).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LearnablePSF",
    "LearnableSRF",
    "SpectralUpNet",
    "RotationAugmentor",
    "rotate",
    "load_official_augmentor",
]


class LearnablePSF(nn.Module):
    """The learned spatial degradation D_z (SpaDnet): one s×s stride-s kernel shared by all bands.

    Args:
        scale: the spatial factor s (kernel = stride = s, no bias, no padding).

    Shape:
        (B, C, H, W) → (B, C, H/s, W/s).

    Reference:
        ADASR (arXiv 2310.07255), ``arch/spatial_downsample.py``; UDALN.

    Deviations:
        None: initialised to the box filter 1/s², as the official code.
    """

    def __init__(self, scale: int):
        super().__init__()
        if int(scale) < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.scale = int(scale)
        self.conv = nn.Conv2d(1, 1, self.scale, stride=self.scale, bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / self.scale**2)

    @property
    def kernel(self) -> torch.Tensor:
        """The current PSF, (s, s)."""
        return self.conv.weight[0, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur and decimate every band: (B, C, H, W) → (B, C, H/s, W/s)."""
        b, c, h, w = x.shape
        y = self.conv(x.reshape(b * c, 1, h, w))  # (B·C, 1, H/s, W/s): every band blurred alike
        return y.reshape(b, c, *y.shape[-2:])


class LearnableSRF(nn.Module):
    """The learned spectral degradation D_y (SpeDnet): per MSI band, a weighted mean over its HSI band range.

    Args:
        supports: ``[(lo_b, hi_b)]`` inclusive HSI band ranges, one per MSI band
            (:func:`attnkit.data.hsi.srf_supports`).
        num_hsi_bands: L.
        init_sigma: width (in bands) of the Gaussian initial response, centred on each range.
        norm_grad: let the gradient flow through the weight-sum normalisation. ``False`` (the official
            code) divides by the detached sum, so the gradient ignores the normalisation.

    Shape:
        (B, L, H, W) → (B, M, H, W).

    Reference:
        ADASR (arXiv 2310.07255), ``arch/spectral_downsample.py``; UDALN.
    """

    def __init__(
        self,
        supports: Sequence[tuple[int, int]],
        num_hsi_bands: int,
        init_sigma: float = 3.5,
        norm_grad: bool = False,
    ):
        super().__init__()
        self.supports = [(int(lo), int(hi)) for lo, hi in supports]
        if not self.supports:
            raise ValueError("supports must name at least one MSI band")
        for lo, hi in self.supports:
            if not 0 <= lo <= hi < num_hsi_bands:
                raise ValueError(f"support ({lo}, {hi}) outside [0, {num_hsi_bands - 1}]")
        self.num_hsi_bands = int(num_hsi_bands)
        self.norm_grad = bool(norm_grad)
        self.weights = nn.ParameterList()
        for lo, hi in self.supports:
            idx = torch.arange(hi - lo + 1, dtype=torch.float32)
            g = torch.exp(-((idx - (hi - lo) / 2) ** 2) / (2 * init_sigma**2))
            self.weights.append(nn.Parameter(g / g.sum()))

    def normalized_weights(self) -> list[torch.Tensor]:
        """The per-band responses divided by their sum (detached sum unless ``norm_grad``)."""
        return [w / (w.sum() if self.norm_grad else w.detach().sum()) for w in self.weights]

    def matrix(self) -> torch.Tensor:
        """The current SRF as a dense (L, M) matrix, columns summing to 1."""
        r = torch.zeros(self.num_hsi_bands, len(self.supports), device=self.weights[0].device)
        for b, ((lo, hi), w) in enumerate(zip(self.supports, self.normalized_weights())):
            r[lo : hi + 1, b] = w
        return r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project to MSI bands: (B, L, H, W) → (B, M, H, W); raises ValueError on a wrong L."""
        if x.shape[1] != self.num_hsi_bands:
            raise ValueError(f"x must have {self.num_hsi_bands} bands, got {x.shape[1]}")
        out = [
            torch.einsum("blhw,l->bhw", x[:, lo : hi + 1], w)  # (B, H, W): weighted mean of the range
            for (lo, hi), w in zip(self.supports, self.normalized_weights())
        ]
        return torch.stack(out, 1)  # (B, M, H, W)


class SpectralUpNet(nn.Module):
    """The spectral up-mapping U (SpeUnet): MSI → HSI by 1×1 convolutions that double the width.

    n = ⌊log₂(L/M)⌋ blocks Conv1×1(M·2^(i−1) → M·2^i) + LeakyReLU(0.2), then Conv1×1(M·2^n → L) and a
    LeakyReLU(0.2) on the output. 2,206 parameters for 8 → 46.

    Args:
        msi_bands: M.
        hsi_bands: L (> M).

    Shape:
        (B, M, H, W) → (B, L, H, W).

    Reference:
        ADASR (arXiv 2310.07255), ``arch/spectral_upsample.py``; UDALN.
    """

    def __init__(self, msi_bands: int, hsi_bands: int):
        super().__init__()
        if msi_bands < 1 or hsi_bands <= msi_bands:
            raise ValueError(f"need hsi_bands > msi_bands >= 1, got {msi_bands} -> {hsi_bands}")
        n = int(math.floor(math.log2(hsi_bands / msi_bands)))
        layers: list[nn.Module] = []
        width = msi_bands
        for _ in range(n):
            layers += [nn.Conv2d(width, width * 2, 1), nn.LeakyReLU(0.2)]
            width *= 2
        layers += [nn.Conv2d(width, hsi_bands, 1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map MSI to HSI: (B, M, H, W) → (B, L, H, W)."""
        return self.net(z)


def rotate(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """Rotate images by ``theta`` radians: ``affine_grid`` + bilinear ``grid_sample``, zero padding.

    The matrix is [[cos θ, −sin θ, 0], [sin θ, cos θ, 0]] with ``align_corners=False``; θ = π/2 equals
    ``torch.rot90(x, 1, (2, 3))`` on square images.

    Args:
        x: the images.
        theta: one angle, or one per image; differentiable.

    Shape:
        x (B, C, H, W), theta () or (B,) → (B, C, H, W).

    Returns:
        The rotated images.

    Raises:
        ValueError: ``x`` is not 4-D or ``theta`` has the wrong size.

    Reference:
        ADASR (arXiv 2310.07255), ``arch/augmentor.py`` (``rot_img``).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    theta = torch.as_tensor(theta, dtype=x.dtype, device=x.device).reshape(-1)
    if theta.numel() == 1:
        theta = theta.expand(x.shape[0])
    if theta.numel() != x.shape[0]:
        raise ValueError(f"theta must hold 1 or B={x.shape[0]} angles, got {theta.numel()}")
    c, s = torch.cos(theta), torch.sin(theta)
    z = torch.zeros_like(c)
    mat = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RotationAugmentor(nn.Module):
    """The augmentor G: predicts one rotation angle per LR-HSI from a strided CNN.

    Eight Conv(3×3, padding 1) + BatchNorm + LeakyReLU(0.2) layers with the given widths (layers 2, 4, 6
    and 8 stride 2), global average pooling, Linear(512 → 1024), LeakyReLU(0.2), Linear(1024 → 1),
    θ = max_angle·tanh(·). 5,240,321 parameters for 46 bands.

    Args:
        hsi_bands: L, the input channels.
        widths: the eight conv widths.
        max_angle: the angle bound (the official code uses 3.14).

    Shape:
        (B, L, h, w) → (B,) angles in (−max_angle, max_angle), radians.

    Reference:
        ADASR (arXiv 2310.07255), ``arch/augmentor.py`` (``Augmentor``).

    Deviations:
        The official layers are Conv3d/BatchNorm3d on a depth-1 volume; two of the three kernel-depth
        slices only ever see zero padding, so the function is exactly a Conv2d with the middle slice.
        We use Conv2d/BatchNorm2d (5,240,321 instead of 14,656,769 parameters);
        :func:`load_official_augmentor` maps official weights. The bound is π, not 3.14, by default.
        BatchNorm runs in train mode on one sample, as in the official code (spatial statistics only).
    """

    def __init__(
        self,
        hsi_bands: int,
        widths: Sequence[int] = (64, 64, 128, 128, 256, 256, 512, 512),
        max_angle: float = math.pi,
    ):
        super().__init__()
        if len(widths) != 8:
            raise ValueError(f"widths must list 8 conv widths, got {len(widths)}")
        self.max_angle = float(max_angle)
        cin = hsi_bands
        for i, w in enumerate(widths, start=1):
            stride = 2 if i % 2 == 0 else 1
            setattr(self, f"conv{i}", nn.Conv2d(cin, w, 3, stride=stride, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(w))
            cin = w
        self.fc1 = nn.Linear(cin, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """One angle per image: (B, L, h, w) → (B,) radians."""
        x = y
        for i in range(1, 9):
            x = F.leaky_relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)), 0.2)
        x = x.mean((2, 3))  # (B, 512)
        x = self.fc2(F.leaky_relu(self.fc1(x), 0.2))  # (B, 1)
        return self.max_angle * torch.tanh(x[:, 0])  # (B,)


def load_official_augmentor(
    state_dict: Mapping[str, torch.Tensor], hsi_bands: int | None = None, max_angle: float = 3.14
) -> RotationAugmentor:
    """Build a :class:`RotationAugmentor` from the official Conv3d ``Augmentor``'s ``state_dict``.

    Conv3d weights (out, in, 3, 3, 3) become Conv2d weights by taking the middle depth slice
    ``[:, :, 1]`` (the other slices multiply zero padding); BatchNorm3d and Linear entries are copied.
    A ``module.`` prefix (DataParallel) is stripped.

    Args:
        state_dict: the official keys ``conv{i}.weight``, ``conv{i}.bias``, ``bn{i}.*``, ``fc1.*``, ``fc2.*``.
        hsi_bands: L (default: read from ``conv1.weight``).
        max_angle: the angle bound; 3.14 reproduces the official outputs.

    Returns:
        The augmentor, in train mode, with the official function.

    Raises:
        KeyError: an expected key is missing or an unexpected one is present.
        ValueError: a conv weight is not 5-D with kernel depth 3.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if "conv1.weight" not in sd:
        raise KeyError("state_dict has no 'conv1.weight'; is it the official ADASR Augmentor's?")
    widths = [int(sd[f"conv{i}.weight"].shape[0]) for i in range(1, 9)]
    bands = int(sd["conv1.weight"].shape[1]) if hsi_bands is None else int(hsi_bands)
    model = RotationAugmentor(bands, widths=widths, max_angle=max_angle)
    mapped = {}
    for k, v in sd.items():
        if k.startswith("conv") and k.endswith(".weight"):
            if v.dim() != 5 or v.shape[2] != 3:
                raise ValueError(f"{k} must be a Conv3d weight (out, in, 3, kh, kw), got {tuple(v.shape)}")
            v = v[:, :, 1]  # the middle depth slice: the only one that sees the depth-1 input
        mapped[k] = v
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise KeyError(f"official augmentor keys do not match: missing {missing}, unexpected {unexpected}")
    return model
