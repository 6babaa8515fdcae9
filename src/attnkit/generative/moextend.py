"""MoExtend: add a new expert to a frozen mixture-of-experts LLM, on transformers' own MoE blocks.

MoExtend extends a frozen MoE language model to a new modality by adding one expert to chosen layers.
In an extended layer with E frozen experts [code, ``src/model_moextend.py``]::

    p = softmax([W_gate·x (E, frozen) ; w_new·x (1, trainable)])      idx = top-k(p)
    p̃ = p + g(p),   g = Linear(E+1 → 16, no bias) → GELU → Linear(16 → E+1, no bias)
    out = Σ_{i∈idx} (p̃_i / Σ_{j∈idx} p̃_j)·expert_i(x)

The new expert starts as a copy of the layer's most-used expert, its router row as a copy of that
expert's row, g's first layer N(0, 0.02²) and its second **zero**; only the new expert, its router row
and g train. Layers are chosen by how much their expert frequencies shift when the router is tuned on the
new data (:func:`select_layers`).

:func:`extend_moe` works on any block with a router ``gate`` (``gate.weight`` of shape ``(E, H)``,
``gate(x)`` returning the logits first) and experts ``experts.gate_up_proj (E, 2I, H)`` /
``experts.down_proj (E, H, I)``: transformers' ``MixtralSparseMoeBlock`` and ``Qwen2MoeSparseMoeBlock``
(its shared expert is kept, frozen) and attnkit's :class:`TopKMoE`.

Reference:
    MoExtend: Tuning New Experts for Modality and Task Extension, Zhong et al., ACL 2024 SRW,
    arXiv 2408.03511; official code github.com/zhongshsh/MoExtend (``src/model_moextend.py``,
    ``expert_distribution.py``, ``init_expert.py``).

Deviations:
    - ``expert_frequencies``: the official ``expert_distribution.py`` takes the first two entries of an
      *ascending* ``argsort``, i.e. counts the two **least** likely experts per token; attnkit counts the
      top-k (``count="top"``, default) and keeps the official count as ``count="official"``.
    - The official extension is **not** an identity at initialisation: the copied router row ties the new
      expert with its source, so for every token whose first choice is the source, top-2 becomes
      {source, copy} (weights ½, ½) instead of {source, second}. attnkit offers ``routing="paired"``
      [attnkit reconstruction] where the copy shares its source's slot — the slot's logit is
      ``logsumexp(l_s, l_new) − log 2`` and the slot's weight splits between source and copy by
      ``softmax(l_s, l_new)`` — which reproduces the original block exactly at initialisation while the
      copy and its router row still train. The default, ``routing="moextend"``, is the paper's formula.
    - The official code's Mixtral jitter noise is not applied in the extended block (Mixtral's default is
      0), and its load-balancing auxiliary loss is left to the host model (it sees the E frozen logits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.generative._moe_blocks import TopKMoE, upcycle_mlp, upcycle_model

__all__ = [
    "TopKMoE",
    "ExtendedMoE",
    "extend_moe",
    "expert_frequencies",
    "select_layers",
    "find_moe_blocks",
    "record_router_logits",
    "extend_model",
    "upcycle_mlp",
    "upcycle_model",
]

ROUTINGS = ("moextend", "paired")


def _check_block(moe: nn.Module) -> None:
    gate, experts = getattr(moe, "gate", None), getattr(moe, "experts", None)
    ok = (
        gate is not None
        and getattr(getattr(gate, "weight", None), "dim", lambda: 0)() == 2
        and getattr(getattr(experts, "gate_up_proj", None), "dim", lambda: 0)() == 3
        and getattr(getattr(experts, "down_proj", None), "dim", lambda: 0)() == 3
    )
    if not ok:
        raise TypeError(
            f"moe must be a MoE block with gate.weight (E, H) and experts.gate_up_proj / down_proj (3-D), "
            f"e.g. transformers' MixtralSparseMoeBlock (transformers >= 5 layout); got {type(moe).__name__}"
        )


class ExtendedMoE(nn.Module):
    """A frozen MoE block plus one trainable expert, its router row and the calibration MLP g.

    Built by :func:`extend_moe`; see the module docstring for the routing formula.

    Args:
        base: the MoE block (frozen here).
        source_expert: index of the expert copied into the new one (the layer's most used).
        routing: ``"moextend"`` (the paper's 9-way top-k) or ``"paired"`` (identity-preserving).
        calib_hidden: width of g (16 in the official code).
        init_std: std of g's first layer (the official ``initializer_range`` 0.02).

    Shape:
        ``(B, T, H) -> (B, T, H)``, like the block it wraps.

    Attributes:
        new_gate_up: ``(2I, H)`` new expert's fused gate/up projection.
        new_down: ``(H, I)`` new expert's down projection.
        router_row: ``(1, H)`` the new expert's router row.
        calibration: g.

    Reference:
        MoExtend, arXiv 2408.03511; github.com/zhongshsh/MoExtend ``MixtralSparseMoeBlock`` and
        ``_tran_vision_expert``.
    """

    def __init__(
        self,
        base: nn.Module,
        source_expert: int,
        routing: str = "moextend",
        calib_hidden: int = 16,
        init_std: float = 0.02,
    ):
        super().__init__()
        _check_block(base)
        num_experts = base.gate.weight.shape[0]
        if not 0 <= source_expert < num_experts:
            raise ValueError(f"source_expert must be in [0, {num_experts}), got {source_expert}")
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        self.base, self.source_expert, self.routing, self.num_experts = (
            base,
            int(source_expert),
            routing,
            num_experts,
        )
        self.top_k = int(getattr(base.gate, "top_k", getattr(base, "top_k", 2)))
        self.normalize = bool(getattr(base.gate, "norm_topk_prob", True))
        base.requires_grad_(False)
        with torch.no_grad():
            self.new_gate_up = nn.Parameter(
                base.experts.gate_up_proj[source_expert].detach().clone()
            )  # (2I, H)
            self.new_down = nn.Parameter(base.experts.down_proj[source_expert].detach().clone())  # (H, I)
            self.router_row = nn.Parameter(
                base.gate.weight[source_expert : source_expert + 1].detach().clone()
            )
        ref = base.gate.weight
        self.calibration = nn.Sequential(
            nn.Linear(num_experts + 1, calib_hidden, bias=False),
            nn.GELU(),
            nn.Linear(calib_hidden, num_experts + 1, bias=False),
        ).to(device=ref.device, dtype=ref.dtype)
        nn.init.normal_(self.calibration[0].weight, std=init_std)
        nn.init.zeros_(self.calibration[2].weight)

    def new_expert(self, x: torch.Tensor) -> torch.Tensor:
        """The new expert's output (the block's own activation).

        Shape:
            ``(N, H) -> (N, H)``.
        """
        gate, up = F.linear(x, self.new_gate_up).chunk(2, dim=-1)  # (N, I) each
        return F.linear(self.base.experts.act_fn(gate) * up, self.new_down)

    def route(
        self, logits: torch.Tensor, new_logit: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Routing weights of the frozen experts and of the new one.

        Args:
            logits: ``(N, E)`` frozen router logits.
            new_logit: ``(N, 1)`` the new expert's logit.

        Returns:
            ``(indices (N, k), weights (N, k), new_weight (N,))``: indices into the frozen experts, with E
            marking a slot taken by the new expert (its weight there is 0); ``new_weight`` is the new
            expert's weight (0 where it is not selected). Weights include g's calibration.
        """
        logits, new_logit = logits.float(), new_logit.float()
        big_e = self.num_experts
        if self.routing == "moextend":
            probs = torch.cat([logits, new_logit], -1).softmax(-1)  # (N, E+1)
            idx = torch.topk(probs, self.top_k, dim=-1).indices  # (N, k)
            cal = probs + self.calibration(probs.to(self.calibration[0].weight.dtype)).float()
            w = cal.gather(1, idx)  # (N, k)
            w_new_slots = w * (idx == big_e)
        else:  # paired: the copy shares its source's slot
            s = self.source_expert
            pair = torch.stack([logits[:, s], new_logit[:, 0]], -1)  # (N, 2)
            slot = torch.logsumexp(pair, -1) - math.log(2.0)  # (N,) = l_s at init
            group = torch.cat([logits[:, :s], slot[:, None], logits[:, s + 1 :]], -1).softmax(-1)  # (N, E)
            split = pair.softmax(-1)  # (N, 2): source, copy
            probs = torch.cat([group[:, :s], group[:, s : s + 1] * split[:, :1], group[:, s + 1 :]], -1)
            probs = torch.cat([probs, group[:, s : s + 1] * split[:, 1:]], -1)  # (N, E+1)
            idx = torch.topk(group, self.top_k, dim=-1).indices  # (N, k) over slots
            cal = probs + self.calibration(probs.to(self.calibration[0].weight.dtype)).float()
            w = cal.gather(1, idx)  # (N, k); slot s carries the source's part
            w_new_slots = cal[:, big_e : big_e + 1] * (idx == s)  # (N, k): the copy's part of slot s
        total = w.sum(-1, keepdim=True) + (
            w_new_slots.sum(-1, keepdim=True) if self.routing == "paired" else 0
        )
        if self.normalize:
            w, w_new_slots = w / total, w_new_slots / total
        if self.routing == "moextend":
            w = w.masked_fill(idx == big_e, 0.0)
        return idx, w, w_new_slots.sum(-1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Frozen experts plus the new expert, mixed by the extended router (and a shared expert, if any)."""
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])  # (N, H)
        logits = self.base.gate(x)[0]  # (N, E); transformers' router recorders still see it
        idx, w, w_new = self.route(logits, F.linear(x, self.router_row))
        out = self.base.experts(x, idx, w.to(x.dtype))  # index E is transformers' skip sentinel
        if self.routing == "moextend":
            used = (idx == self.num_experts).any(-1)
        else:
            used = (idx == self.source_expert).any(-1)
        tok = torch.where(used)[0]
        if tok.numel():
            out = out.index_add(0, tok, self.new_expert(x[tok]) * w_new[tok, None].to(x.dtype))
        if hasattr(self.base, "shared_expert"):  # Qwen2-MoE
            out = out + torch.sigmoid(self.base.shared_expert_gate(x)) * self.base.shared_expert(x)
        return out.reshape(shape)

    def new_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: new expert, router row and g."""
        return [self.new_gate_up, self.new_down, self.router_row, *self.calibration.parameters()]


def extend_moe(
    moe: nn.Module, source_expert: int, routing: str = "moextend", calib_hidden: int = 16
) -> ExtendedMoE:
    """Extend a MoE block with a copy of ``source_expert``, a copied router row and a zero-output g.

    Args:
        moe: a transformers ``MixtralSparseMoeBlock`` / ``Qwen2MoeSparseMoeBlock`` or a :class:`TopKMoE`.
        source_expert: the expert to copy (MoExtend: the most used, ``freq.argmax()``).
        routing: ``"moextend"`` (default, the paper's formula) or ``"paired"`` (exact identity at init).
        calib_hidden: width of the calibration MLP g.

    Returns:
        The :class:`ExtendedMoE`; ``moe``'s own parameters are frozen, the new ones require grad.

    Raises:
        TypeError: ``moe`` is not a supported MoE block.
        ValueError: ``source_expert`` out of range or an unknown ``routing``.

    Reference:
        MoExtend, arXiv 2408.03511 (``_tran_vision_expert``).
    """
    return ExtendedMoE(moe, source_expert, routing=routing, calib_hidden=calib_hidden)


def expert_frequencies(
    router_logits: torch.Tensor | Sequence[torch.Tensor], top_k: int = 2, count: str = "top"
) -> torch.Tensor:
    """Fraction of top-k routing slots each expert receives, per layer.

    Args:
        router_logits: one ``(N, E)`` tensor (or ``(..., E)``) or a sequence of them, one per layer.
        top_k: slots per token (2).
        count: ``"top"`` counts the k most likely experts; ``"official"`` reproduces
            ``expert_distribution.py``'s ascending ``argsort``, i.e. the k **least** likely.

    Shape:
        Returns ``(E,)`` for one tensor, ``(L, E)`` for L of them; each row sums to 1.

    Returns:
        Frequencies (float32).

    Raises:
        ValueError: unknown ``count`` or ``top_k`` outside [1, E].

    Deviations:
        ``count="official"`` is the official code's bug, kept for reproducing its layer selection.
    """
    if count not in ("top", "official"):
        raise ValueError(f"count must be 'top' or 'official', got {count!r}")
    single = isinstance(router_logits, torch.Tensor)
    rows = []
    for lg in [router_logits] if single else router_logits:
        lg = lg.reshape(-1, lg.shape[-1]).float()  # (N, E)
        if not 1 <= top_k <= lg.shape[-1]:
            raise ValueError(f"top_k must be in [1, {lg.shape[-1]}], got {top_k}")
        probs = lg.softmax(-1)
        sel = probs.argsort(-1)[:, :top_k] if count == "official" else probs.topk(top_k, -1).indices
        rows.append(torch.bincount(sel.flatten(), minlength=lg.shape[-1]).float() / sel.numel())
    out = torch.stack(rows)
    return out[0] if single else out


def select_layers(freq_before: torch.Tensor, freq_after: torch.Tensor, fraction: float = 0.5) -> list[int]:
    """The layers whose expert frequencies shift most: top ``fraction`` by std over experts of the change.

    Args:
        freq_before: ``(L, E)`` frequencies before router tuning (or on the old domain).
        freq_after: ``(L, E)`` after (or on the new domain).
        fraction: share of layers kept (MoExtend: half, ``len // 2``).

    Returns:
        The chosen layer indices, ascending.

    Raises:
        ValueError: shapes differ or ``fraction`` outside (0, 1].

    Reference:
        ``expert_distribution.py``: ``(gate − org).std()`` (sample std), top ``len // 2`` layers, sorted.
    """
    if freq_before.shape != freq_after.shape or freq_before.dim() != 2:
        raise ValueError(
            f"freq_before {tuple(freq_before.shape)} and freq_after {tuple(freq_after.shape)} must be equal (L, E)"
        )
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    score = (freq_after.float() - freq_before.float()).std(dim=1)  # (L,), unbiased as pandas
    k = max(1, int(len(score) * fraction))
    return sorted(torch.argsort(score, descending=True, stable=True)[:k].tolist())


def find_moe_blocks(model: nn.Module) -> dict[int, nn.Module]:
    """The MoE blocks of a transformers causal LM, by decoder-layer index (``model.model.layers[i].mlp``).

    Args:
        model: e.g. ``MixtralForCausalLM``, ``Qwen2MoeForCausalLM`` or an upcycled Llama.

    Returns:
        ``{layer index: block}`` for each layer whose ``mlp`` is a supported MoE block (or already extended).
    """
    out = {}
    for i, layer in enumerate(model.model.layers):
        mlp = getattr(layer, "mlp", None)
        try:
            _check_block(mlp.base if isinstance(mlp, ExtendedMoE) else mlp)
        except TypeError:
            continue
        out[i] = mlp
    return out


@torch.no_grad()
def record_router_logits(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
) -> dict[int, torch.Tensor]:
    """Run ``model`` on ``batches`` and collect every MoE layer's router logits (hooks on ``gate``).

    Args:
        model: a transformers causal LM with MoE blocks.
        batches: keyword-argument dicts for ``model(**batch)`` (``input_ids``, ``attention_mask``). Padded
            positions are dropped where an ``attention_mask`` is given.

    Returns:
        ``{layer index: (N, E) logits}`` over all non-padded tokens.
    """
    blocks = {i: (b.base if isinstance(b, ExtendedMoE) else b) for i, b in find_moe_blocks(model).items()}
    store: dict[int, list[torch.Tensor]] = {i: [] for i in blocks}
    masks: list[torch.Tensor] = []
    hooks = [
        b.gate.register_forward_hook(lambda _m, _i, out, i=i: store[i].append(out[0].detach().float().cpu()))
        for i, b in blocks.items()
    ]
    try:
        for batch in batches:
            model(**batch)
            ids = batch["input_ids"]
            masks.append(batch.get("attention_mask", torch.ones_like(ids)).reshape(-1).bool().cpu())
    finally:
        for h in hooks:
            h.remove()
    keep = torch.cat(masks)
    return {i: torch.cat(v)[keep] for i, v in store.items()}


def extend_model(
    model: nn.Module,
    layers: Sequence[int],
    source_experts: Sequence[int] | dict[int, int],
    routing: str = "moextend",
) -> list[nn.Parameter]:
    """Freeze a MoE causal LM and extend the chosen layers' MoE blocks (MoExtend's ``_init_vision_expert``).

    Args:
        model: a transformers MoE causal LM (``model.model.layers[i].mlp`` are MoE blocks).
        layers: decoder-layer indices to extend (e.g. :func:`select_layers`).
        source_experts: per layer, the expert to copy (a sequence aligned with ``layers`` or a dict).
        routing: see :func:`extend_moe`.

    Returns:
        The new trainable parameters (every other parameter of ``model`` is frozen).

    Raises:
        ValueError: a layer has no MoE block, or ``source_experts`` does not cover ``layers``.
    """
    src = dict(source_experts) if isinstance(source_experts, dict) else dict(zip(layers, source_experts))
    if set(src) != set(layers):
        raise ValueError("source_experts must give one expert for every layer in layers")
    blocks = find_moe_blocks(model)
    missing = [i for i in layers if i not in blocks or isinstance(blocks[i], ExtendedMoE)]
    if missing:
        raise ValueError(f"layers {missing} have no (unextended) MoE block")
    model.requires_grad_(False)
    params: list[nn.Parameter] = []
    for i in layers:
        ext = extend_moe(blocks[i], int(src[i]), routing=routing)
        model.model.layers[i].mlp = ext
        params += ext.new_parameters()
    return params
