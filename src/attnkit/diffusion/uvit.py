"""U-ViT, the ViT diffusion backbone with long skips, with ScaleLong's LSC variants built in.

Reference:
    Bao et al., "All are Worth Words: A ViT Backbone for Diffusion Models", CVPR 2023, arXiv 2209.12152,
    https://github.com/baofff/U-ViT; with ScaleLong (Huang et al., NeurIPS 2023, arXiv 2310.13545,
    https://github.com/sail-sg/ScaleLong, ``libs/uvit.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .scalelong import LSCGate, check_lsc_scaling, lsc_coefficients

__all__ = ["UViT", "timestep_embedding", "uvit_small_cifar10", "uvit_tiny"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The sinusoidal time embedding of U-ViT: first half cos, second half sin.

    Args:
        timesteps: (B,) integer or real timesteps.
        dim: embedding width; frequencies are ``exp(−ln(max_period)·k/(dim/2))``.
        max_period: the longest period.

    Shape:
        (B,) → (B, dim)

    Returns:
        The float32 embedding (an odd ``dim`` is zero-padded by one column).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None].to(timesteps.device)  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2·half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, L, D/heads) each
        x = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(qkᵀ/√(D/heads))·v
        return self.proj(x.transpose(1, 2).reshape(b, n, d))  # (B, L, D)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, skip: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (B, L, 2D) -> (B, L, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """U-ViT with ScaleLong's long-skip scaling (``lsc_scaling``).

    ``depth//2`` in-blocks push their outputs onto a stack, one mid block, ``depth//2`` out-blocks pop them
    (N = depth // 2 long skips, depth + 1 blocks in all). Out-block j (0-based from the middle) fuses
    ``skip_linear(concat([h, c·s]))`` where s is the popped skip and c its coefficient: 1 (``"none"``),
    2^(−1/2) (``"sqrt2"``), κ^(N−1−j) (``"cs"``), a shared token gate ζ(s) (``"ls"``) or one gate per skip
    (``"ls_nonshared"``). The decoder stream h is never scaled.

    Args:
        img_size: square input size H = W.
        patch_size: p; L_p = (H/p)² patches.
        in_chans: C.
        embed_dim: D.
        depth: the official meaning (N = depth // 2 skips).
        num_heads: attention heads.
        mlp_ratio: MLP width D·mlp_ratio.
        qkv_bias: bias of the qkv projection.
        mlp_time_embed: Linear(D, 4D)–SiLU–Linear(4D, D) on the time embedding (else Identity).
        num_classes: > 0 adds a label token (then ``forward`` needs ``y``).
        conv: a final Conv2d(C, C, 3, pad 1) after unpatchify.
        lsc_scaling: ``"none"``, ``"sqrt2"``, ``"cs"``, ``"ls"`` or ``"ls_nonshared"``.
        kappa: κ in (0, 1] for ``"cs"``.
        lsc_reduction: the LS gates' reduction r.

    Shape:
        ``forward(x (B, C, H, W), timesteps (B,), y (B,) or None) -> (B, C, H, W)``

    Raises:
        ValueError: ``img_size`` not divisible by ``patch_size``, ``embed_dim`` not divisible by
            ``num_heads``, ``depth < 2``, a bad ``lsc_scaling``/``kappa``; in ``forward``, an input of another
            size when LS fixes the token count (the message names the expected count).

    Reference:
        U-ViT, arXiv 2209.12152, https://github.com/baofff/U-ViT; ScaleLong, arXiv 2310.13545,
        https://github.com/sail-sg/ScaleLong (``libs/uvit.py``).

    Deviations:
        Attention uses ``scaled_dot_product_attention`` (the same math as the official explicit softmax).
        LS hidden width ``max(L // r, 1)`` (see :class:`LSCGate`). LS gates keep PyTorch's default Linear
        init, as in the official code.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 512,
        depth: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        mlp_time_embed: bool = False,
        num_classes: int = -1,
        conv: bool = True,
        lsc_scaling: str = "none",
        kappa: float = 0.5,
        lsc_reduction: int = 16,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if depth < 2:
            raise ValueError(f"depth must be >= 2 (N = depth // 2 skips), got {depth}")
        check_lsc_scaling(lsc_scaling, kappa)
        self.img_size, self.patch_size, self.in_chans, self.embed_dim = (
            img_size,
            patch_size,
            in_chans,
            embed_dim,
        )
        self.num_classes, self.lsc_scaling, self.kappa = num_classes, lsc_scaling, float(kappa)
        self.num_skips = depth // 2
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        num_patches = (img_size // patch_size) ** 2
        self.time_embed = (
            nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(), nn.Linear(4 * embed_dim, embed_dim))
            if mlp_time_embed
            else nn.Identity()
        )
        self.extras = 1
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes, embed_dim)
            self.extras = 2
        self.num_tokens = self.extras + num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, embed_dim))
        self.in_blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(self.num_skips)
        )
        self.mid_block = _Block(embed_dim, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList(
            _Block(embed_dim, num_heads, mlp_ratio, qkv_bias, skip=True) for _ in range(self.num_skips)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size**2 * in_chans)
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1) if conv else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)
        # LS gates are built after the custom init, so they keep nn.Linear's default init (official)
        if lsc_scaling == "ls":
            self.lsc_gate = LSCGate(self.num_tokens, lsc_reduction, layout="tokens")
        elif lsc_scaling == "ls_nonshared":
            self.lsc_gates = nn.ModuleList(
                LSCGate(self.num_tokens, lsc_reduction, layout="tokens") for _ in range(self.num_skips)
            )
        coefs = (
            lsc_coefficients(self.num_skips, lsc_scaling, kappa)
            if lsc_scaling in ("none", "sqrt2", "cs")
            else []
        )
        self.coefficients = coefs  # outermost first; out-block j uses coefs[N − 1 − j]

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def scale_skip(self, s: torch.Tensor, j: int) -> torch.Tensor:
        """The scaled skip that out-block ``j`` (0-based from the middle) fuses.

        Shape:
            (B, L, D) → (B, L, D)
        """
        if self.lsc_scaling == "ls":
            return s * self.lsc_gate(s)
        if self.lsc_scaling == "ls_nonshared":
            return s * self.lsc_gates[self.num_skips - 1 - j](s)  # gates indexed outermost first
        if self.lsc_scaling == "none":
            return s
        return s * self.coefficients[self.num_skips - 1 - j]

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise (or whatever the training target is) of ``x`` at ``timesteps``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must be (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if self.num_classes > 0 and y is None:
            raise ValueError(f"this UViT is class-conditional (num_classes={self.num_classes}); pass y")
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, L_p, D)
        n_p = h.shape[1]
        if self.lsc_scaling in ("ls", "ls_nonshared") and n_p + self.extras != self.num_tokens:
            raise ValueError(
                f"lsc_scaling={self.lsc_scaling!r} fixes the token count to {self.num_tokens} "
                f"(img_size {self.img_size}); this input gives {n_p + self.extras} tokens"
            )
        t = self.time_embed(timestep_embedding(timesteps, self.embed_dim).to(h.dtype)).unsqueeze(
            1
        )  # (B, 1, D)
        h = torch.cat([t, h], dim=1)
        if y is not None and self.num_classes > 0:
            h = torch.cat([self.label_emb(y).unsqueeze(1), h], dim=1)  # (B, extras + L_p, D)
        if h.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"this UViT was built for img_size {self.img_size} ({self.num_tokens} tokens); "
                f"got {tuple(x.shape[-2:])}"
            )
        h = h + self.pos_embed
        skips = []
        for blk in self.in_blocks:
            h = blk(h)
            skips.append(h)
        h = self.mid_block(h)
        for j, blk in enumerate(self.out_blocks):
            h = blk(h, self.scale_skip(skips.pop(), j))
        h = self.decoder_pred(self.norm(h))  # (B, extras + L_p, p²·C)
        h = h[:, self.extras :, :]
        p, c, g = self.patch_size, self.in_chans, int(math.isqrt(n_p))
        h = (
            h.reshape(-1, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(-1, c, g * p, g * p)
        )  # (B, C, H, W)
        return self.final_layer(h)


def uvit_small_cifar10(**kwargs) -> UViT:
    """The official CIFAR-10 U-ViT (img 32, patch 2, C 3, D 512, depth 12, 8 heads): 44,255,328 parameters.

    Args:
        **kwargs: overrides of :class:`UViT` arguments (e.g. ``lsc_scaling="cs"``).

    Returns:
        The model (44,263,825 parameters with ``"ls"``, 44,306,310 with ``"ls_nonshared"``).
    """
    cfg = dict(img_size=32, patch_size=2, in_chans=3, embed_dim=512, depth=12, num_heads=8, mlp_ratio=4.0)
    cfg.update(kwargs)
    return UViT(**cfg)


def uvit_tiny(**kwargs) -> UViT:
    """A CPU-sized U-ViT (img 8, patch 2, C 1, D 64, depth 12, 4 heads): 698,638 parameters.

    Args:
        **kwargs: overrides of :class:`UViT` arguments (``depth=16`` gives 914,318 parameters;
            ``img_size=32, patch_size=4`` is the Fashion-MNIST setting).

    Returns:
        The model.
    """
    cfg = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=12, num_heads=4, mlp_ratio=4.0)
    cfg.update(kwargs)
    return UViT(**cfg)
