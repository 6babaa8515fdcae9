"""The RSSN-style MHCH backbone and the CEM user-state correction.

Reference:
    Zhong, Qin, Huang, Li, "Causal-Enhance Module for machine-human chatting handoff" (EMNLP 2022; arXiv
    2210.02862, "Causal Inference for Chatting Handoff"), code github.com/Qrange-group/CEM
    (``tf_models/mtl/CEM.py``, ``Network.py``), built on RSSN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["MHCHBackbone", "CEM"]

_NEG = -1e30


def _masked_softmax(logits: torch.Tensor, keep: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` where ``keep`` is True; rows with nothing kept are all zeros."""
    logits = logits.masked_fill(~keep, _NEG)
    w = torch.softmax(logits, dim) * keep
    return w / w.sum(dim, keepdim=True).clamp_min(1e-30)


class MHCHBackbone(nn.Module):
    """The RSSN-style multi-task network of the official CEM code: handoff (MHCH) and satisfaction (SSA).

    Utterances are encoded by a BiLSTM with token attention; a causal-match matrix of utterance dot
    products, two cross-attentions between the MHCH and SSA branches, a causal 4-head transformer layer
    (SSA) and a unidirectional LSTM (MHCH) give per-turn handoff probabilities p, per-turn user states
    u, customer-turn pooling weights w and the dialogue satisfaction s = Σ_t w_t·u_t.

    Args:
        vocab_size: embedding rows (0 is padding).
        embed_dim: token embedding width (200-d GloVe in the official code).
        rnn_dim: utterance BiLSTM width per direction and MHCH LSTM width.
        dense_dim: branch width.
        attention_size: token-attention and pooling projection width.
        num_heads: SSA self-attention heads.
        ff_dim: SSA feed-forward hidden width.
        max_utterances: T; the causal-match features are T wide, so inputs pad to this T.
        dropout: drop probability (the official keep probability is 0.65).
        causal: mask future keys everywhere, and normalise w over the turns seen so far (for online
            use [inferred]); ``False`` is the official offline labeller.
        faithful_masks: reproduce the official masks (query rows masked instead of keys, no token-padding
            mask); ``False`` masks padding (and, for SSA→MHCH, agent) keys.
        embeddings: optional (vocab_size, embed_dim) initial embeddings (GloVe).

    Raises:
        ValueError: bad sizes, embeddings of the wrong shape, or inputs with more than ``max_utterances``
            utterances.

    Shape:
        tokens (B, T, S), sent_len (B, T), dia_len (B,), role (B, T) → p (B, T, 2), u (B, T, 3),
        w (B, T), s (B, 3). With ``return_attn`` also ``attn_ssa2mhch`` and ``attn_mhch2ssa`` (B, T, T).

    Reference:
        CEM (arXiv 2210.02862), ``tf_models/mtl/CEM.py``; RSSN.

    Deviations:
        Initialisations follow the official distributions (N(0, 0.1²) token attention, N(0, 1) pooling);
        a PyTorch LSTM has two bias vectors per gate where TF's ``BasicLSTMCell`` has one, so parameter
        counts differ from the TF model. ``faithful_masks=False`` (default) masks keys and padding
        properly; ``causal=True`` is an online variant not in the official code.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 200,
        rnn_dim: int = 128,
        dense_dim: int = 256,
        attention_size: int = 64,
        num_heads: int = 4,
        ff_dim: int = 512,
        max_utterances: int = 50,
        dropout: float = 0.35,
        causal: bool = False,
        faithful_masks: bool = False,
        embeddings: torch.Tensor | None = None,
    ):
        super().__init__()
        if vocab_size < 2 or max_utterances < 1:
            raise ValueError(
                f"need vocab_size >= 2 and max_utterances >= 1, got {vocab_size}, {max_utterances}"
            )
        self.max_utterances, self.causal, self.faithful_masks = max_utterances, causal, faithful_masks
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        if embeddings is not None:
            if tuple(embeddings.shape) != (vocab_size, embed_dim):
                raise ValueError(
                    f"embeddings must be ({vocab_size}, {embed_dim}), got {tuple(embeddings.shape)}"
                )
            self.embed.weight.data.copy_(embeddings)
        self.drop = nn.Dropout(dropout)
        self.utt_rnn = nn.LSTM(embed_dim, rnn_dim, batch_first=True, bidirectional=True)
        h2 = 2 * rnn_dim
        self.tok_w = nn.Parameter(torch.randn(h2, attention_size) * 0.1)
        self.tok_b = nn.Parameter(torch.randn(attention_size) * 0.1)
        self.tok_u = nn.Parameter(torch.randn(attention_size) * 0.1)
        self.utt_proj = nn.Linear(2 * h2, rnn_dim)
        e_dim = rnn_dim + 2 * h2  # e = [i, c]: 640 for rnn_dim = 128
        self.mhch_in = nn.Linear(e_dim + max_utterances, dense_dim)
        self.ssa_in = nn.Linear(e_dim + max_utterances, dense_dim)
        self.ssa2mhch = nn.Linear(2 * dense_dim, dense_dim)
        self.mhch2ssa_norm = nn.LayerNorm(dense_dim)
        self.self_attn = nn.MultiheadAttention(dense_dim, num_heads, batch_first=True)
        self.attn_norm = nn.LayerNorm(dense_dim)
        self.ff = nn.Sequential(nn.Linear(dense_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dense_dim))
        self.ff_norm = nn.LayerNorm(dense_dim)
        self.senti_out = nn.Linear(dense_dim, 3)
        self.ctx_rnn = nn.LSTM(dense_dim, rnn_dim, batch_first=True)
        self.handoff_out = nn.Linear(rnn_dim, 2)
        self.pool_w = nn.Parameter(torch.randn(dense_dim, attention_size))
        self.pool_b = nn.Parameter(torch.randn(attention_size))
        self.pool_u = nn.Parameter(torch.randn(attention_size))

    def _encode_utterances(
        self, tokens: torch.Tensor, sent_len: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        b, t, s = tokens.shape
        idx = valid.reshape(-1).nonzero().squeeze(1)  # only real utterances are encoded
        x = self.drop(self.embed(tokens.reshape(b * t, s)[idx]))  # (N, S, E)
        lens = sent_len.reshape(-1)[idx].clamp(1, s).cpu()
        packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.utt_rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=s)  # (N, S, 2r)
        out = self.drop(out)
        h_final = torch.cat([h[0], h[1]], -1)  # (N, 2r)
        v = torch.tanh(out @ self.tok_w + self.tok_b)  # (N, S, A)
        logits = v @ self.tok_u  # (N, S)
        if self.faithful_masks:
            alpha = torch.softmax(logits, -1)  # the official code pools over padding tokens too
        else:
            keep = torch.arange(s, device=tokens.device)[None] < lens.to(tokens.device)[:, None]
            alpha = _masked_softmax(logits, keep)
        pooled = (alpha[..., None] * out).sum(1)  # (N, 2r)
        c = torch.cat([pooled, h_final], -1)  # (N, 4r)
        e = torch.cat([torch.tanh(self.utt_proj(c)), c], -1)  # (N, r + 4r)
        full = e.new_zeros(b * t, e.shape[-1]).index_copy(0, idx, e)  # padding utterances stay 0
        return self.drop(full.reshape(b, t, -1))  # (B, T, 5r)

    def _key_mask(self, valid: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, T, T) keep-mask over keys: valid queries × allowed keys (× the past when causal)."""
        t = valid.shape[1]
        keep = valid[:, :, None] & keys[:, None, :]
        if self.causal:
            keep = keep & torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
        return keep

    def _cross(self, logits, valid, keys, query_mask_official):
        if self.faithful_masks:  # the official code tiles a (B, T) mask along the last axis: query rows
            rows = query_mask_official[:, :, None].expand_as(logits)
            keep = torch.ones_like(rows)
            if self.causal:
                keep = keep & torch.ones_like(rows[0]).tril()
            return torch.softmax(logits.masked_fill(~rows, 0.0).masked_fill(~keep, _NEG), -1)
        return _masked_softmax(logits, self._key_mask(valid, keys))

    def _pool_weights(self, f, customer):
        e = torch.tanh(f @ self.pool_w + self.pool_b) @ self.pool_u  # (B, T)
        w_full = _masked_softmax(e, customer)  # normalised over the whole dialogue
        if not self.causal:
            return w_full, w_full
        t = e.shape[1]
        keep = (
            customer[:, None, :] & torch.ones(t, t, dtype=torch.bool, device=e.device).tril()
        )  # (B, t, j≤t)
        w_prefix = _masked_softmax(e[:, None, :].expand(-1, t, -1), keep)  # (B, T, T)
        return torch.diagonal(w_prefix, dim1=1, dim2=2) * customer, w_full  # w_t over turns ≤ t

    def forward(
        self,
        tokens: torch.Tensor,
        sent_len: torch.Tensor,
        dia_len: torch.Tensor,
        role: torch.Tensor,
        return_attn: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Per-turn handoff and user-state probabilities; see the class docstring for shapes."""
        b, t, _ = tokens.shape
        if t > self.max_utterances:
            raise ValueError(f"tokens has T={t} utterances, more than max_utterances={self.max_utterances}")
        dev = tokens.device
        valid = torch.arange(t, device=dev)[None] < dia_len.to(dev)[:, None]  # (B, T)
        customer = valid & (role == 1)
        e = self._encode_utterances(tokens, sent_len, valid)  # (B, T, 5r)
        match = (e @ e.transpose(1, 2)).tril(-1)  # (B, T, T): strictly earlier utterances only
        match = F.pad(match, (0, self.max_utterances - t))  # (B, T, T_max): the official width
        x = torch.cat([e, match], -1)
        d_m = self.drop(F.relu(self.mhch_in(x)))  # (B, T, D)
        d_s = self.drop(F.relu(self.ssa_in(x)))
        a_sm = self._cross(d_m @ d_s.transpose(1, 2), valid, customer, customer)  # SSA→MHCH (B, T, T)
        z = F.relu(self.ssa2mhch(torch.cat([a_sm @ d_s, d_m], -1)))  # (B, T, D)
        pos = torch.softmax(torch.arange(t, dtype=d_s.dtype, device=dev), 0)  # per-query-row scale
        a_ms = self._cross((d_s @ d_m.transpose(1, 2)) * pos[None, :, None], valid, valid, valid)
        h_s = self.mhch2ssa_norm(d_s + a_ms @ d_m)
        causal_mask = torch.ones(t, t, dtype=torch.bool, device=dev).triu(1)  # True = blocked
        sa, _ = self.self_attn(h_s, h_s, h_s, attn_mask=causal_mask, need_weights=False)
        h = self.attn_norm(h_s + sa)
        f = self.ff_norm(h + self.ff(h))  # (B, T, D)
        u = torch.softmax(self.senti_out(f), -1)  # (B, T, 3)
        lens = dia_len.clamp(1, t).cpu()
        packed = pack_padded_sequence(z, lens, batch_first=True, enforce_sorted=False)
        ctx, _ = self.ctx_rnn(packed)
        ctx, _ = pad_packed_sequence(ctx, batch_first=True, total_length=t)
        p = torch.softmax(self.handoff_out(self.drop(ctx)), -1)  # (B, T, 2)
        w, w_full = self._pool_weights(f, customer)
        s = (w_full[..., None] * u).sum(1)  # (B, 3)
        out = {"p": p, "u": u, "w": w, "s": s}
        if return_attn:
            out.update(attn_ssa2mhch=a_sm, attn_mhch2ssa=a_ms)
        return out


class CEM(nn.Module):
    """The Causal-Enhance Module: corrects a backbone's handoff probabilities by the user state.

    p̃_t = (p_t[0]·w_t·u_t[0], p_t[1]·w_t·u_t[2]) with ``pairing="official"``; ``"intuitive"`` pairs
    (normal, handoff) with (u[2], u[0]) instead. handoff_t = argmax p̃_t, so agent and padding turns
    (w_t = 0) are always "normal". ``user_state=False`` gives the plain backbone (p̃ = p), the baseline.

    Args:
        backbone: a :class:`MHCHBackbone`.
        user_state: apply the correction.
        pairing: ``"official"`` (handoff × u[2], the code) or ``"intuitive"`` (handoff × u[0]).
        normalize: renormalise p̃ over its 2 classes on customer turns (the official p̃ is unnormalised).

    Shape:
        As :class:`MHCHBackbone`, plus p_tilde (B, T, 2) and handoff (B, T) long.

    Reference:
        CEM (arXiv 2210.02862), ``tf_models/mtl/CEM.py``.

    Deviations:
        The official pairing multiplies *handoff* by u[2] although sentiment 0 co-occurs with handoff in
        the data; it stays the default for reproduction and ``"intuitive"`` is offered beside it.
    """

    def __init__(
        self,
        backbone: MHCHBackbone,
        user_state: bool = True,
        pairing: str = "official",
        normalize: bool = False,
    ):
        super().__init__()
        if pairing not in ("official", "intuitive"):
            raise ValueError(f"pairing must be 'official' or 'intuitive', got {pairing!r}")
        self.backbone, self.user_state, self.pairing, self.normalize = (
            backbone,
            user_state,
            pairing,
            normalize,
        )

    def forward(
        self,
        tokens: torch.Tensor,
        sent_len: torch.Tensor,
        dia_len: torch.Tensor,
        role: torch.Tensor,
        return_attn: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Backbone outputs plus ``p_tilde`` and ``handoff``; see the class docstring."""
        out = self.backbone(tokens, sent_len, dia_len, role, return_attn=return_attn)
        p, u, w = out["p"], out["u"], out["w"]
        if not self.user_state:
            p_tilde = p
        else:
            normal_u, hand_u = (
                (u[..., 0], u[..., 2]) if self.pairing == "official" else (u[..., 2], u[..., 0])
            )
            p_tilde = torch.stack([p[..., 0] * w * normal_u, p[..., 1] * w * hand_u], -1)  # (B, T, 2)
            if self.normalize:
                total = p_tilde.sum(-1, keepdim=True)
                p_tilde = torch.where(total > 0, p_tilde / total.clamp_min(1e-30), p_tilde)
        out["p_tilde"] = p_tilde
        out["handoff"] = p_tilde.argmax(-1)  # ties (0, 0) → 0, "normal"
        return out
