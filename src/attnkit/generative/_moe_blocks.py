"""A plain top-k MoE block in transformers' layout, and sparse upcycling of a dense gated MLP into one.

:class:`TopKMoE` stores its parameters exactly as transformers' ``MixtralSparseMoeBlock`` does (a router
``gate.weight`` of shape ``(E, H)``; experts ``experts.gate_up_proj (E, 2I, H)`` and
``experts.down_proj (E, H, I)``), so that :func:`attnkit.generative.moextend.extend_moe` treats our block,
Mixtral's and Qwen2-MoE's through one code path, and so that a block upcycled from a Llama MLP drops into
a transformers model in place of its ``mlp``.

Reference:
    Mixtral of Experts, Jiang et al., arXiv 2401.04088 (top-2 routing, SwiGLU experts).
    Sparse Upcycling: Training Mixture-of-Experts from Dense Checkpoints, Komatsuzaki et al.,
    arXiv 2212.05055 (every expert starts as a copy of the dense MLP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TopKRouter", "SwiGLUExperts", "TopKMoE", "upcycle_mlp", "upcycle_model"]


class TopKRouter(nn.Module):
    """Linear router: softmax over experts, top-k, renormalised (Mixtral's ``MixtralTopKRouter`` contract).

    Args:
        dim: hidden width H.
        num_experts: E.
        top_k: experts per token.

    Shape:
        Input ``(N, H)``; returns ``logits (N, E)``, ``weights (N, k)``, ``indices (N, k)``.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.top_k, self.num_experts, self.hidden_dim = top_k, num_experts, dim
        self.weight = nn.Parameter(torch.empty(num_experts, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route ``x``: ``(logits, renormalised top-k weights, top-k indices)``."""
        logits = F.linear(x.reshape(-1, self.hidden_dim), self.weight)  # (N, E)
        top, idx = torch.topk(logits.float().softmax(-1), self.top_k, dim=-1)  # (N, k)
        return logits, top / top.sum(-1, keepdim=True), idx


class SwiGLUExperts(nn.Module):
    """E SwiGLU experts stored as 3-D tensors (transformers' ``MixtralExperts`` layout).

    Args:
        dim: hidden width H.
        ffn_dim: expert width I.
        num_experts: E.

    Shape:
        ``forward(x (N, H), indices (N, k), weights (N, k)) -> (N, H)``; an index equal to E is skipped
        (transformers' sentinel convention).
    """

    def __init__(self, dim: int, ffn_dim: int, num_experts: int):
        super().__init__()
        self.num_experts, self.hidden_dim, self.intermediate_dim = num_experts, dim, ffn_dim
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * ffn_dim, dim))
        self.down_proj = nn.Parameter(torch.empty(num_experts, dim, ffn_dim))
        nn.init.normal_(self.gate_up_proj, std=0.02)
        nn.init.normal_(self.down_proj, std=0.02)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the selected experts' outputs for each token."""
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            tok, slot = torch.where(indices == e)
            if tok.numel() == 0:
                continue
            gate, up = F.linear(x[tok], self.gate_up_proj[e]).chunk(2, dim=-1)  # (n, I) each
            y = F.linear(self.act_fn(gate) * up, self.down_proj[e])  # (n, H)
            out = out.index_add(0, tok, y * weights[tok, slot, None].to(y.dtype))
        return out


class TopKMoE(nn.Module):
    """A top-k mixture of SwiGLU experts, a drop-in for a transformers decoder layer's ``mlp``.

    Args:
        dim: hidden width H.
        ffn_dim: expert width I.
        num_experts: E.
        top_k: experts per token (2, as Mixtral).

    Shape:
        ``(B, T, H) -> (B, T, H)``.

    Reference:
        Mixtral of Experts, arXiv 2401.04088.
    """

    def __init__(self, dim: int, ffn_dim: int, num_experts: int, top_k: int = 2):
        super().__init__()
        self.top_k = top_k
        self.gate = TopKRouter(dim, num_experts, top_k)
        self.experts = SwiGLUExperts(dim, ffn_dim, num_experts)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Route every token to its top-k experts and mix their outputs."""
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])  # (N, H)
        _, weights, indices = self.gate(x)
        return self.experts(x, indices, weights).reshape(shape)


@torch.no_grad()
def upcycle_mlp(mlp: nn.Module, num_experts: int = 4, top_k: int = 2, router_std: float = 0.02) -> TopKMoE:
    """Sparse upcycling: a :class:`TopKMoE` whose every expert is a copy of a dense gated MLP.

    Because all experts equal the MLP and the top-k weights sum to one, the block computes exactly the
    MLP's function whatever the router says; the router is initialised N(0, ``router_std``²).

    Args:
        mlp: a gated MLP with ``gate_proj``, ``up_proj``, ``down_proj`` (Llama/Mistral/Qwen2 ``*MLP``) and
            ``act_fn``.
        num_experts: E.
        top_k: experts per token.
        router_std: router init std.

    Returns:
        The MoE block, on the MLP's device and dtype.

    Raises:
        TypeError: ``mlp`` lacks the three projections.

    Reference:
        Sparse Upcycling, Komatsuzaki et al., arXiv 2212.05055.
    """
    if not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        raise TypeError("mlp must have gate_proj, up_proj and down_proj (a Llama-style gated MLP)")
    w_gate, w_up, w_down = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight  # (I,H) (I,H) (H,I)
    ffn_dim, dim = w_gate.shape
    moe = TopKMoE(dim, ffn_dim, num_experts, top_k).to(device=w_gate.device, dtype=w_gate.dtype)
    moe.experts.act_fn = mlp.act_fn
    moe.experts.gate_up_proj.copy_(torch.cat([w_gate, w_up], 0).expand(num_experts, -1, -1))  # (E, 2I, H)
    moe.experts.down_proj.copy_(w_down.expand(num_experts, -1, -1))  # (E, H, I)
    moe.gate.weight.normal_(0.0, router_std)
    return moe


def upcycle_model(
    model: nn.Module, layers: list[int], num_experts: int = 4, top_k: int = 2, seed: int = 0
) -> nn.Module:
    """Replace the ``mlp`` of the chosen decoder layers of a transformers model by upcycled MoE blocks.

    Args:
        model: a transformers causal LM whose decoder layers live in ``model.model.layers``.
        layers: decoder-layer indices to upcycle.
        num_experts: experts per block.
        top_k: experts per token.
        seed: router initialisation seed.

    Returns:
        ``model`` (changed in place).

    Raises:
        ValueError: a layer index is out of range.
    """
    decoder = model.model.layers
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        for i in layers:
            if not 0 <= i < len(decoder):
                raise ValueError(f"layer {i} out of range for {len(decoder)} decoder layers")
            decoder[i].mlp = upcycle_mlp(decoder[i].mlp, num_experts, top_k)
    return model
