"""ScaleLong: scaling the long skip connections (LSCs) of diffusion UNets.

A UNet with N long skips joins encoder block a_i to decoder block b_i; ScaleLong multiplies the skip
tensor s_i (never the decoder stream) by a coefficient before the two are fused: a constant κ^(i−1)
("CS", i = 1 the outermost skip) or a small learned gate ζ(s_i) in (0, 1) ("LS"). To first order the
feature and gradient magnitudes grow like Σ_i κ_i², which CS bounds by 1/(1 − κ²) whatever the depth.

Reference:
    Huang, Zhou, Yan, Lin, "ScaleLong: Towards More Stable Training of Diffusion Model via Scaling
    Network Long Skip Connection", NeurIPS 2023, arXiv 2310.13545. Official code:
    https://github.com/sail-sg/ScaleLong (``libs/uvit.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LSC_SCALINGS", "lsc_coefficients", "LSCGate", "ScaleLongHandle", "apply_scalelong"]

LSC_SCALINGS = ("none", "sqrt2", "cs", "ls", "ls_nonshared")
"""attnkit's names of the official variants (``config.nnet.scalelong`` 0–4 in the official code)."""


def check_lsc_scaling(lsc_scaling: str, kappa: float) -> None:
    """Validate a ``(lsc_scaling, kappa)`` pair (shared by :func:`apply_scalelong` and ``UViT``).

    Raises:
        ValueError: ``lsc_scaling`` is not one of :data:`LSC_SCALINGS`, or ``kappa`` is not in (0, 1].
    """
    if lsc_scaling not in LSC_SCALINGS:
        raise ValueError(f"lsc_scaling must be one of {LSC_SCALINGS}, got {lsc_scaling!r}")
    if not (isinstance(kappa, int | float) and 0.0 < float(kappa) <= 1.0):
        raise ValueError(f"kappa must be in (0, 1], got {kappa!r}")


def lsc_coefficients(num_skips: int, mode: str = "cs", kappa: float = 0.5) -> list[float]:
    """The constant LSC coefficients κ_i, index 0 the outermost skip (i = 1).

    Args:
        num_skips: N, the number of long skip connections (≥ 1).
        mode: ``"none"`` (all 1, the plain UNet), ``"sqrt2"`` (all 2^(−1/2), the 1/√2-CS baseline) or
            ``"cs"`` (κ^(i−1): 1, κ, κ², … from outermost to innermost).
        kappa: κ in (0, 1]; the official default is 0.5, the official README suggests [0.5, 0.95].

    Returns:
        ``num_skips`` floats, outermost first. ``lsc_coefficients(6, "cs", 0.5)`` is
        ``[1, 0.5, 0.25, 0.125, 0.0625, 0.03125]``.

    Raises:
        ValueError: ``num_skips < 1``, an unknown or learnable ``mode`` (LS has no constants), or ``kappa``
            outside (0, 1].

    Reference:
        ScaleLong, arXiv 2310.13545; official code ``libs/uvit.py`` (the j-th out-block from the middle
        gets κ^(N−1−j), the same as κ^(i−1) with i = 1 outermost).
    """
    if not isinstance(num_skips, int) or num_skips < 1:
        raise ValueError(f"num_skips must be a positive int, got {num_skips!r}")
    if mode not in ("none", "sqrt2", "cs"):
        raise ValueError(
            f"mode must be 'none', 'sqrt2' or 'cs' (LS has no constant coefficients), got {mode!r}"
        )
    check_lsc_scaling(mode, kappa)
    if mode == "none":
        return [1.0] * num_skips
    if mode == "sqrt2":
        return [2.0**-0.5] * num_skips
    return [float(kappa) ** i for i in range(num_skips)]


class LSCGate(nn.Module):
    """The learnable LSC coefficient ζ(s) of ScaleLong's LS variant: an SE-style gate in (0, 1).

    ``layout="tokens"`` is the official U-ViT gate (class ``Attentionlayer``): the skip tensor (B, L, D) is
    averaged over the embedding dim, two FCs act across the **tokens**, and a sigmoid gives one coefficient
    per token. ``layout="channels"`` is attnkit's gate for conv UNets [inferred]: (B, C, H, W) averaged over
    H and W, the FCs act across channels, one coefficient per channel. The module returns the gate, not the
    gated tensor; multiply it onto the skip yourself (``s * gate(s)``).

    Args:
        num_features: L (tokens) or C (channels) that the FCs act on; fixed at construction.
        reduction: hidden width is ``max(num_features // reduction, 1)`` (official r = 16).
        layout: ``"tokens"`` or ``"channels"``.

    Shape:
        - tokens: (B, L, D) → (B, L, 1)
        - channels: (B, C, H, W) → (B, C, 1, 1)

    Raises:
        ValueError: ``num_features < 1``, ``reduction < 1`` or an unknown ``layout``; in ``forward``, an input
            whose token/channel count differs from ``num_features`` (the message names the expected count).

    Reference:
        ScaleLong, arXiv 2310.13545; official code https://github.com/sail-sg/ScaleLong ``libs/uvit.py``.

    Deviations:
        The official hidden width ``L // 16`` has no lower bound; below 16 tokens its first FC has 0 outputs
        and the gate silently becomes a constant σ(b2). attnkit uses ``max(L // r, 1)``, which changes
        nothing at L ≥ 16. The gate keeps PyTorch's default ``nn.Linear`` init, as in the official code
        (where it is built after the backbone's custom init).
    """

    def __init__(self, num_features: int, reduction: int = 16, layout: str = "tokens"):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"reduction must be a positive int, got {reduction!r}")
        if layout not in ("tokens", "channels"):
            raise ValueError(f"layout must be 'tokens' or 'channels', got {layout!r}")
        self.num_features, self.layout = num_features, layout
        self.hidden = max(num_features // reduction, 1)
        self.fc1 = nn.Linear(num_features, self.hidden)
        self.fc2 = nn.Linear(self.hidden, num_features)

    def extra_repr(self) -> str:
        """The sizes and the resolved hidden width."""
        return f"num_features={self.num_features}, hidden={self.hidden}, layout={self.layout!r}"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """The gate of skip tensor ``s`` (see the class Shape)."""
        if self.layout == "tokens":
            if s.ndim != 3 or s.shape[1] != self.num_features:
                raise ValueError(
                    f"LSCGate(tokens) expects (B, {self.num_features}, D) skip tensors, got {tuple(s.shape)}; "
                    f"an LS gate fixes the token count ({self.num_features}), so the model cannot run at "
                    "another image size"
                )
            q = s.mean(-1)  # (B, L)
        else:
            if s.ndim != 4 or s.shape[1] != self.num_features:
                raise ValueError(
                    f"LSCGate(channels) expects (B, {self.num_features}, H, W) skip tensors, got {tuple(s.shape)}"
                )
            q = s.mean((2, 3))  # (B, C)
        a = torch.sigmoid(self.fc2(torch.relu(self.fc1(q))))  # (B, L) or (B, C)
        return a.unsqueeze(-1) if self.layout == "tokens" else a[..., None, None]


@dataclass
class ScaleLongHandle:
    """What :func:`apply_scalelong` returns: the coefficients, the gates and a way to undo it all.

    Attributes:
        lsc_scaling: the variant applied.
        coefficients: the constant κ_i per skip, outermost first (None for the LS variants).
        gates: one :class:`LSCGate` per skip, outermost first (the same module N times for ``"ls"``);
            empty for the constant variants.
        channels: the channel count of each skip, outermost first.
    """

    lsc_scaling: str
    coefficients: list[float] | None
    gates: list[LSCGate]
    channels: list[int]
    _model: nn.Module | None = field(default=None, repr=False)
    _hooks: list[Any] = field(default_factory=list, repr=False)

    @property
    def num_skips(self) -> int:
        """N, the number of long skips."""
        return len(self.channels)

    def remove(self) -> None:
        """Unregister the hooks and the gates (``model.scalelong_gates``); the model is as before."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self._model is not None:
            if "scalelong_gates" in self._model._modules:
                del self._model._modules["scalelong_gates"]
            if getattr(self._model, "_attnkit_scalelong", None) is self:
                del self._model._attnkit_scalelong
        self._model = None


def _skip_channels(unet: nn.Module) -> list[int]:
    """Channels of the tensors a diffusers UNet collects as ``down_block_res_samples``, in order."""
    chans = [int(unet.conv_in.out_channels)]
    for block in unet.down_blocks:
        for r in block.resnets:
            chans.append(int(r.out_channels))
        for d in getattr(block, "downsamplers", None) or []:
            chans.append(int(getattr(d, "out_channels", chans[-1])))
    return chans


def _scale_tuple(res: tuple, start: int, handle: ScaleLongHandle) -> tuple:
    out = []
    for e, s in enumerate(res):
        g = start + e
        if handle.coefficients is not None:
            out.append(s * handle.coefficients[g])
        else:
            out.append(s * handle.gates[g](s))
    return tuple(out)


def _make_pre_hook(start: int, handle: ScaleLongHandle):
    def hook(module, args, kwargs):
        if "res_hidden_states_tuple" in kwargs:  # UNet2DConditionModel passes it by keyword
            kwargs = dict(kwargs)
            kwargs["res_hidden_states_tuple"] = _scale_tuple(kwargs["res_hidden_states_tuple"], start, handle)
            return args, kwargs
        if len(args) < 2:
            raise TypeError(f"{type(module).__name__} was called without its res_hidden_states_tuple")
        args = (args[0], _scale_tuple(args[1], start, handle), *args[2:])  # UNet2DModel: positional arg 1
        return args, kwargs

    return hook


def apply_scalelong(
    unet: nn.Module, lsc_scaling: str = "cs", kappa: float = 0.5, reduction: int = 16
) -> ScaleLongHandle:
    """Apply ScaleLong to a diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` in place, with hooks.

    The UNet collects ``down_block_res_samples`` (the ``conv_in`` output, then every resnet and downsampler
    output of each down block); each up block receives the last ``len(up_block.resnets)`` of them as its
    ``res_hidden_states_tuple``. A ``forward_pre_hook`` on every up block multiplies each element of that
    tuple (passed positionally by ``UNet2DModel``, by keyword by ``UNet2DConditionModel``) by its
    coefficient κ^g (g = 0 the ``conv_in`` output, the outermost skip) or its gate. This is the pattern of
    diffusers' FreeU, applied in training as well.

    Args:
        unet: a model with ``conv_in``, ``down_blocks`` and ``up_blocks`` laid out as diffusers' UNets.
        lsc_scaling: one of ``"none"``, ``"sqrt2"``, ``"cs"``, ``"ls"``, ``"ls_nonshared"``.
        kappa: κ in (0, 1] for ``"cs"`` (ignored otherwise, but validated).
        reduction: the LS gates' reduction r.

    Returns:
        A :class:`ScaleLongHandle`; ``handle.remove()`` restores the model (bit-identical outputs). For LS
        the gates are registered as ``unet.scalelong_gates`` (an ``nn.ModuleList``) so that they train and
        save with ``state_dict()``; build the optimizer after this call.

    Raises:
        TypeError: ``unet`` has no ``down_blocks``/``up_blocks``/``conv_in``, or ScaleLong is already applied.
        ValueError: a bad ``lsc_scaling``/``kappa``; ``"ls"`` (one shared gate) on skips of different channel
            counts; the skip count of the down path and the up path disagree.

    Reference:
        ScaleLong, arXiv 2310.13545, https://github.com/sail-sg/ScaleLong.

    Deviations:
        [inferred] The official LS gate acts across U-ViT tokens; conv UNet skips have different widths and
        resolutions, so attnkit gates channels (SE-style, hidden ``max(C // r, 1)``). ``"ls"`` shares one gate
        and needs every skip to have the same channel count (the gate depends on C only).
    """
    check_lsc_scaling(lsc_scaling, kappa)
    for attr in ("conv_in", "down_blocks", "up_blocks"):
        if not hasattr(unet, attr):
            raise TypeError(
                f"apply_scalelong needs a diffusers-style UNet with conv_in, down_blocks and up_blocks; "
                f"{type(unet).__name__} has no {attr!r} (for U-ViT pass lsc_scaling to UViT instead)"
            )
    if getattr(unet, "_attnkit_scalelong", None) is not None:
        raise TypeError("ScaleLong is already applied to this model; call handle.remove() first")
    chans = _skip_channels(unet)
    n = len(chans)
    sizes = [len(b.resnets) for b in unet.up_blocks]
    if sum(sizes) != n:
        raise ValueError(f"the down path collects {n} skip tensors but the up blocks consume {sum(sizes)}")
    coefs, gates = None, []
    if lsc_scaling in ("none", "sqrt2", "cs"):
        coefs = lsc_coefficients(n, lsc_scaling, kappa)
    elif lsc_scaling == "ls":
        if len(set(chans)) != 1:
            raise ValueError(
                f"lsc_scaling='ls' shares one gate, which needs every skip to have the same channel count; "
                f"this UNet's skips have {chans}; use 'ls_nonshared'"
            )
        gates = [LSCGate(chans[0], reduction, layout="channels")] * n
    else:
        gates = [LSCGate(c, reduction, layout="channels") for c in chans]
    handle = ScaleLongHandle(lsc_scaling, coefs, gates, chans, _model=unet)
    if gates:
        p = next(unet.parameters(), None)
        unique = nn.ModuleList(dict.fromkeys(gates))  # the shared gate once
        if p is not None:
            unique.to(device=p.device, dtype=p.dtype)
        unet.scalelong_gates = unique
    end = n
    for block, nb in zip(unet.up_blocks, sizes, strict=True):  # up block 0 is the innermost
        handle._hooks.append(
            block.register_forward_pre_hook(_make_pre_hook(end - nb, handle), with_kwargs=True)
        )
        end -= nb
    unet._attnkit_scalelong = handle
    return handle


def sum_of_squares(coefficients: list[float]) -> float:
    """Σ_i κ_i², the first-order growth factor of feature and gradient magnitudes [inferred]."""
    return math.fsum(c * c for c in coefficients)
