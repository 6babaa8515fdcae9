"""SUR-adapter: a prompt adapter between a frozen text encoder and a frozen diffusion UNet.

The adapter rewrites the token states ``x`` (B, T, d) of a simple narrative prompt so that the UNet
conditioned on them draws what a long keyword prompt would; it is trained with the diffusion loss
plus two distillation terms: toward the complex prompt's states and toward an LLM's vector of the
simple prompt (through a fixed projection ``P``)::

    h = TE(x)                                       # TransformerEncoder, depth 2, 8 heads, FFN 2048, post-LN
    A = softmax((W_q h + b_q)(W_k x + b_k)ᵀ / √d)   # (B, T, T), over tokens
    u = A·x + x;  m = MLP(u) + u;  o = W_fc m + b_fc   # W_fc zero-initialised
    y = η·o + (1 − η)·x                             # η = adapter_weight; y replaces x as UNet context

Reference:
    Zhong et al., "SUR-adapter: Enhancing Text-to-Image Pre-trained Diffusion Models with Large Language
    Models", ACM MM 2023, arXiv 2305.05189; official code https://github.com/Qrange-group/SUR-adapter
    (``SUR_adapter.py``, ``SUR_adapter_train.py``).

Deviations (each one an option; the official behaviour is kept):
    1. ``batch_first=True`` by default. The official ``TransformerEncoderLayer`` uses PyTorch's default
       ``batch_first=False``, so a (B, T, d) input is read as a sequence of length B: self-attention mixes
       *batch items* at each token position (a per-token MLP when B = 1, as in its training; the
       negative and positive prompts mixed at CFG inference). ``batch_first=False`` reproduces it and
       is what released checkpoints need.
    2. The diffusion loss reaches the adapter. The official script re-wraps ``y`` with
       ``torch.tensor(y)`` before the UNet call, which detaches it, so only the two KL terms (weight
       1e-5 each) train the adapter. attnkit's trainer lets the gradient flow
       (``detach_diffusion_loss=False``); ``True`` reproduces the official script.
    3. The LLM projection ``P`` (``LLMResize``) is random, frozen, unseeded and not saved in the
       official code. attnkit draws it from ``projector_seed`` and stores it in the adapter's
       ``state_dict`` (a buffer; a parameter with ``trainable_projector=True``).
    4. The official ``Attention.value_layer`` is never used in the forward pass (values are the raw
       ``x``); attnkit omits it (``value_layer=True`` keeps it for parameter-count parity), and
       :func:`load_official_state_dict` drops its weights, together with the unused template
       ``encoder_layer`` that the official module also registers (``nn.TransformerEncoder`` deep-copies
       it, so its 5,513,984 weights at d = 768 are dead).
    5. ``kd_loss`` keeps the official argument order (``direction="official"``: the *student* is the
       target distribution of ``F.kl_div``, i.e. KL(student ‖ teacher)); ``"forward"`` gives
       KL(teacher ‖ student).
    6. ``adapter_weight`` defaults to 0.1 (``run.sh``), not the argparse default 1e-4.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SURAdapter", "SURLoss", "kd_loss", "sur_loss", "load_official_state_dict", "KD_DIRECTIONS"]

KD_DIRECTIONS = ("official", "forward")


class _TokenAttention(nn.Module):
    """Query from the encoder output, key from the raw states, value = the raw states, plus an MLP.

    Shape:
        query (B, T, d), key_value (B, T, d) -> (B, T, d).
    """

    def __init__(self, dim: int, value_layer: bool = False, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.hidden_size = dim
        self.query_layer = nn.Linear(dim, dim, **kw)
        self.key_layer = nn.Linear(dim, dim, **kw)
        # the official module builds a value projection and never uses it (kept only for parity)
        self.value_layer = nn.Linear(dim, dim, **kw) if value_layer else None
        self.output_layer = nn.Sequential(nn.Linear(dim, dim, **kw), nn.ReLU(), nn.Linear(dim, dim, **kw))

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        q = self.query_layer(query)  # (B, T, d)
        k = self.key_layer(key_value)  # (B, T, d)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hidden_size)  # (B, T, T): one head, scale √d
        u = scores.softmax(-1) @ key_value + key_value  # (B, T, d); values are the raw states
        return self.output_layer(u) + u  # (B, T, d)


class SURAdapter(nn.Module):
    """The SUR-adapter: (B, T, d) prompt states in, adapted states (and two internals) out.

    Args:
        dim: width d of the text encoder's states (768 SD-1.x, 1024 SD-2.x, 384 MiniLM).
        depth: TransformerEncoder layers.
        num_heads: heads of the encoder's self-attention.
        ffn_dim: the encoder's feed-forward width.
        dropout: the encoder's dropout.
        adapter_weight: η, the mix ``y = η·o + (1 − η)·x``.
        batch_first: attend over tokens (True, attnkit) or, as the official code, over the batch (False).
        value_layer: also build the official unused value projection (parameter-count parity only).
        llm_dim: width D_llm of the teacher vectors; builds the projection ``P`` (d × D_llm, with bias).
        projector_seed: seed of ``P``'s draw (``nn.Linear``'s default uniform ±1/√D_llm).
        trainable_projector: make ``P`` a trained parameter instead of a frozen buffer.
        device, dtype: of the parameters.

    Shape:
        forward: x (B, T, d) -> (y, h, o), each (B, T, d).
        project_llm: z (B, D_llm) -> (B, 1, d).

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, ``adapter_weight`` outside [0, 1].

    Reference:
        SUR-adapter, arXiv 2305.05189; https://github.com/Qrange-group/SUR-adapter (``SUR_adapter.py``).

    Deviations:
        See the module docstring: ``batch_first``, ``value_layer`` and the stored seeded ``P``.
        At init ``W_fc = 0``, so ``y = (1 − η)·x + η·b_fc`` exactly.
    """

    def __init__(
        self,
        dim: int = 768,
        depth: int = 2,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        adapter_weight: float = 0.1,
        batch_first: bool = True,
        value_layer: bool = False,
        llm_dim: int | None = None,
        projector_seed: int = 0,
        trainable_projector: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= adapter_weight <= 1.0:
            raise ValueError(f"adapter_weight must be in [0, 1], got {adapter_weight}")
        kw = dict(device=device, dtype=dtype)
        self.dim, self.adapter_weight, self.batch_first = dim, float(adapter_weight), bool(batch_first)
        self.llm_dim, self.projector_seed = llm_dim, int(projector_seed)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=ffn_dim, dropout=dropout, batch_first=batch_first, **kw
        )  # ReLU, post-LN: PyTorch's defaults, as the official code
        self.transformer_encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.attention = _TokenAttention(dim, value_layer=value_layer, **kw)
        self.fc = nn.Linear(dim, dim, **kw)
        nn.init.zeros_(self.fc.weight)
        if llm_dim is not None:
            w, b = self._draw_projector(llm_dim, dim, projector_seed)
            w, b = w.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
            if trainable_projector:
                self.llm_proj_weight, self.llm_proj_bias = nn.Parameter(w), nn.Parameter(b)
            else:
                self.register_buffer("llm_proj_weight", w)  # (d, D_llm), saved in state_dict
                self.register_buffer("llm_proj_bias", b)  # (d,)

    @staticmethod
    def _draw_projector(llm_dim: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``nn.Linear(llm_dim, dim)``'s default init (uniform ±1/√llm_dim), from one seeded CPU stream."""
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(llm_dim)
        w = (torch.rand(dim, llm_dim, generator=g) * 2 - 1) * bound  # (d, D_llm)
        b = (torch.rand(dim, generator=g) * 2 - 1) * bound  # (d,)
        return w, b

    def extra_repr(self) -> str:
        """The resolved widths and flags, shown in ``repr``."""
        return (
            f"dim={self.dim}, adapter_weight={self.adapter_weight}, batch_first={self.batch_first}, "
            f"llm_dim={self.llm_dim}"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adapt prompt states.

        Args:
            x: the text encoder's last hidden states (B, T, d).

        Returns:
            ``(y, h, o)``: the adapted states that replace ``x`` as UNet context, the encoder output
            (distilled toward the LLM) and the pre-mix output ``o``; each (B, T, d).

        Raises:
            ValueError: ``x`` is not (B, T, dim).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected (B, T, {self.dim}) states, got {tuple(x.shape)}")
        h = self.transformer_encoder(x)  # (B, T, d); with batch_first=False: attention over B
        m = self.attention(h, x)  # (B, T, d)
        o = self.fc(m)  # (B, T, d)
        y = self.adapter_weight * o + (1.0 - self.adapter_weight) * x
        return y, h, o

    def project_llm(self, z: torch.Tensor) -> torch.Tensor:
        """Map teacher vectors through ``P``: ``t = P·z + b``, shaped to broadcast over tokens.

        Shape:
            z (B, D_llm) -> (B, 1, d).

        Raises:
            RuntimeError: the adapter was built without ``llm_dim``.
            ValueError: ``z`` is not (B, llm_dim).
        """
        if self.llm_dim is None:
            raise RuntimeError("this SURAdapter has no LLM projection: build it with llm_dim=D_llm")
        if z.dim() != 2 or z.shape[-1] != self.llm_dim:
            raise ValueError(f"expected (B, {self.llm_dim}) teacher vectors, got {tuple(z.shape)}")
        w = self.llm_proj_weight
        return F.linear(z.to(w.dtype), w, self.llm_proj_bias).unsqueeze(1)  # (B, 1, d)


def kd_loss(
    p: torch.Tensor, q: torch.Tensor, temperature: float = 1.0, direction: str = "official"
) -> torch.Tensor:
    """The SUR-adapter distillation term: each d-vector is a logit vector, summed over tokens, mean over B.

    ``direction="official"`` is the official ``distillation_loss(p, q)``:
    ``F.kl_div(log_softmax(p/T), softmax(q/T), reduction="batchmean")·T²`` = KL(softmax(q) ‖ softmax(p)),
    where the official losses pass the *teacher* as ``p`` and the *student* as ``q``, i.e.
    KL(student ‖ teacher). ``"forward"`` swaps the roles: KL(softmax(p) ‖ softmax(q)) = KL(teacher ‖ student).

    Args:
        p: the teacher logits (B, T', d), broadcast to ``q``'s shape (T' = 1 for the LLM vector).
        q: the student logits (B, T, d).
        temperature: T.
        direction: ``"official"`` or ``"forward"``.

    Returns:
        A non-negative scalar (0 when ``p`` equals ``q``).

    Raises:
        ValueError: unknown ``direction``, non-positive ``temperature``, or shapes that do not broadcast.

    Reference:
        SUR-adapter ``SUR_adapter_train.py`` (``distillation_loss``); Hinton et al., arXiv 1503.02531.
    """
    if direction not in KD_DIRECTIONS:
        raise ValueError(f"direction must be one of {KD_DIRECTIONS}, got {direction!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    try:
        p = p.expand_as(q)
    except RuntimeError as e:
        raise ValueError(f"teacher {tuple(p.shape)} does not broadcast to student {tuple(q.shape)}") from e
    p, q = p.float() / temperature, q.float() / temperature
    if direction == "official":
        kl = F.kl_div(p.log_softmax(-1), q.softmax(-1), reduction="batchmean")
    else:
        kl = F.kl_div(q.log_softmax(-1), p.softmax(-1), reduction="batchmean")
    return kl * temperature * temperature


class SURLoss(NamedTuple):
    """The SUR-adapter objective and its parts (scalars): ``total = diffusion + w_llm·llm + w_p·prompt``."""

    total: torch.Tensor
    diffusion: torch.Tensor
    llm: torch.Tensor
    prompt: torch.Tensor


def sur_loss(
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    complex_emb: torch.Tensor,
    llm_vec: torch.Tensor | None,
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    llm_weight: float = 1e-5,
    prompt_weight: float = 1e-5,
    *,
    temperature: float = 1.0,
    kd_direction: str = "official",
    sample_weights: torch.Tensor | None = None,
) -> SURLoss:
    """SUR-adapter's training objective ``L_diff + w_llm·KD(t, h) + w_prompt·KD(c, y)``.

    Args:
        out: the adapter's ``(y, h, o)`` for the simple prompts, each (B, T, d).
        complex_emb: c, the complex prompts' text-encoder states (B, T, d).
        llm_vec: t, the *projected* teacher vectors (``adapter.project_llm(z)``), (B, 1, d) or (B, d);
            ``None`` drops the LLM term.
        eps_pred: the UNet's prediction (B, ...) conditioned on ``y``.
        eps: its target (noise for ε-prediction, velocity for v-prediction), like ``eps_pred``.
        llm_weight: w_llm.
        prompt_weight: w_prompt.
        temperature: the KD temperature T.
        kd_direction: see :func:`kd_loss`.
        sample_weights: per-sample weights (B,) of the diffusion MSE (Min-SNR-γ); ``None`` = plain mean.

    Returns:
        A :class:`SURLoss` of scalars.

    Raises:
        ValueError: ``eps_pred`` and ``eps`` differ in shape, or ``sample_weights`` is not (B,).

    Reference:
        SUR-adapter ``SUR_adapter_train.py``; Min-SNR: Hang et al., arXiv 2303.09556.
    """
    y, h, _ = out
    if eps_pred.shape != eps.shape:
        raise ValueError(f"eps_pred {tuple(eps_pred.shape)} and eps {tuple(eps.shape)} differ")
    per = F.mse_loss(eps_pred.float(), eps.float(), reduction="none").flatten(1).mean(1)  # (B,)
    if sample_weights is not None:
        if sample_weights.shape != per.shape:
            raise ValueError(f"sample_weights must be {tuple(per.shape)}, got {tuple(sample_weights.shape)}")
        per = per * sample_weights.to(per)
    diffusion = per.mean()
    prompt = kd_loss(complex_emb, y, temperature, kd_direction)
    if llm_vec is None:
        llm = diffusion.new_zeros(())
    else:
        t = llm_vec.unsqueeze(1) if llm_vec.dim() == 2 else llm_vec  # (B, 1, d)
        llm = kd_loss(t, h, temperature, kd_direction)
    total = diffusion + llm_weight * llm + prompt_weight * prompt
    return SURLoss(total, diffusion, llm, prompt)


def load_official_state_dict(
    adapter: SURAdapter, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> list[str]:
    """Load an official SUR-adapter checkpoint (``adapter.pt`` of ``SUR_adapter_train.py``) into ``adapter``.

    Drops the official module's dead weights: the template ``encoder_layer.*`` (deep-copied into
    ``transformer_encoder.layers``) and, unless ``adapter`` was built with ``value_layer=True``,
    ``attention.value_layer.*``; strips a ``module.`` prefix (DDP/accelerate wrappers). The official
    checkpoint has no LLM projection, so ``adapter``'s own seeded ``P`` is kept.

    Args:
        adapter: the target; use ``SURAdapter(dim, batch_first=False)`` to reproduce released weights.
        state_dict: the loaded official state dict.
        strict: raise on missing or unexpected keys (other than the dropped ones and ``P``).

    Returns:
        The keys that were dropped.

    Raises:
        RuntimeError: ``strict`` and keys are missing/unexpected, or a shape differs.

    Warns:
        UserWarning: ``adapter.batch_first`` is True: the released weights were trained with the
        official ``batch_first=False`` (batch size 1, so the encoder acted per token), and attending over
        tokens changes what they compute.
    """
    if adapter.batch_first:
        warnings.warn(
            "loading official SUR-adapter weights into an adapter with batch_first=True: they were trained "
            "with batch_first=False (per-token encoder at batch size 1); build SURAdapter(..., "
            "batch_first=False) to reproduce them",
            stacklevel=2,
        )
    keep_value = adapter.attention.value_layer is not None
    sd, dropped = {}, []
    for key, value in state_dict.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.startswith("encoder_layer.") or (k.startswith("attention.value_layer.") and not keep_value):
            dropped.append(key)
            continue
        sd[k] = value
    own = adapter.state_dict()
    for k in ("llm_proj_weight", "llm_proj_bias"):
        if k in own and k not in sd:
            sd[k] = own[k]
    adapter.load_state_dict(sd, strict=strict)
    return dropped
