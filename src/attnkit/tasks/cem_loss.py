"""CEM's training loss and the MHCH metrics (F1, macro-F1, AUC, accuracy, error cost, GT-I/II/III).

Reference:
    Zhong, Qin, Huang, Li, "Causal-Enhance Module for machine-human chatting handoff" (EMNLP 2022; arXiv
    2210.02862), code github.com/Qrange-group/CEM (``tf_models/mtl/CEM.py`` ``_compute_loss``,
    ``Network.evaluate_batch_cem``, ``utility.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["cem_loss", "gt_score", "mhch_metrics"]

_COSTS = ("handoff_mass", "official", "simulator", "none")


def _handoff_nll(
    p_tilde: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, dia_len: torch.Tensor
) -> torch.Tensor:
    """−Σ_c ω_c·y_c·log(p̃_c + 1e-9), ω_0 = √(1 − p̃_1), ω_1 = √p̃_0; summed over t, / dia_len, mean over B."""
    w0 = torch.sqrt((1 - p_tilde[..., 1]).clamp_min(1e-12))
    w1 = torch.sqrt(p_tilde[..., 0].clamp_min(1e-12))
    y1 = y.float()
    nll = -(w0 * (1 - y1) * torch.log(p_tilde[..., 0] + 1e-9) + w1 * y1 * torch.log(p_tilde[..., 1] + 1e-9))
    per_dialogue = (nll * valid).sum(1) / dia_len.clamp_min(1).float()
    return per_dialogue.mean()


def cem_loss(
    out: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    sat_weight: float = 0.3,
    senti_weight: float = 0.0,
    cost: str = "handoff_mass",
    cost_weight: float = 0.01,
    handoff_weight: float = 1.0,
    weight_decay: float = 3e-5,
    model: nn.Module | None = None,
    faithful: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The CEM objective: handoff NLL + satisfaction CE + sentiment CE + cost term + L2.

    L = handoff_weight·L_handoff + sat_weight·L_sat + senti_weight·L_senti + L_cost + weight_decay·Σ‖W‖²/2.

    Args:
        out: :class:`attnkit.tasks.cem.CEM` outputs (``p_tilde``, ``u``, ``w``, ``s``).
        batch: ``handoff`` (B, T), ``senti`` (B, T), ``score`` (B,), ``dia_len`` (B,), ``role`` (B, T).
        sat_weight: weight of the satisfaction cross-entropy of s.
        senti_weight: weight of the per-turn sentiment cross-entropy of u (0.0: off, as the official
            default).
        cost: ``"handoff_mass"`` (default): cost_weight × mean over valid customer turns of p̃_t[1];
            ``"official"``: cost_weight × mean(p̃[:, 1, :]) (utterance index 1, the code);
            ``"simulator"``: the paper's counterfactual cost simulator, whose design is not public;
            ``"none"``.
        cost_weight: λ_c (0.01).
        handoff_weight: weight of the handoff loss (0 trains the satisfaction branch alone).
        weight_decay: the explicit 3e-5·Σ‖W‖²/2 over ``model``'s trainable parameters (skipped when
            ``model`` is None).
        model: the model whose parameters the L2 term covers.
        faithful: average the sentiment loss over all (B, T) cells, padding included (the code);
            ``False`` averages over valid turns.

    Returns:
        ``(loss, parts)``; ``parts`` holds the unweighted ``handoff``, ``sat``, ``senti`` losses, the
        weighted ``cost`` and ``l2`` terms and ``total``, as floats.

    Raises:
        NotImplementedError: ``cost="simulator"``.
        ValueError: an unknown ``cost``.

    Reference:
        CEM (arXiv 2210.02862), ``tf_models/mtl/CEM.py`` (``_compute_loss``).

    Deviations:
        The official "cost simulator" is not a counterfactual network: it averages p̃ at utterance index
        1 (``cost="official"``); the default uses the handoff channel on customer turns, the evident
        intent. The focal weights use √ of values clamped at 1e-12 so the gradient stays finite on agent
        turns (√0 has an infinite derivative).
    """
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    if cost == "simulator":
        raise NotImplementedError(
            'cost="simulator": the paper\'s counterfactual cost simulator is not described in enough detail '
            "to reconstruct and the official code has none; use 'handoff_mass' or 'official'"
        )
    p_tilde, dia_len = out["p_tilde"], batch["dia_len"].to(out["p_tilde"].device)
    t = p_tilde.shape[1]
    valid = torch.arange(t, device=p_tilde.device)[None] < dia_len[:, None]  # (B, T)
    customer = valid & (batch["role"] == 1)
    l_hand = _handoff_nll(p_tilde, batch["handoff"], valid, dia_len)
    l_sat = -torch.log(out["s"].gather(1, batch["score"][:, None]).squeeze(1) + 1e-9).mean()
    log_u = torch.log(out["u"] + 1e-9)
    senti_nll = -log_u.gather(2, batch["senti"][..., None]).squeeze(2)  # (B, T)
    l_senti = senti_nll.mean() if faithful else (senti_nll * valid).sum() / valid.sum().clamp_min(1)
    if cost == "official":
        l_cost = cost_weight * p_tilde[:, 1, :].mean()
    elif cost == "handoff_mass":
        l_cost = cost_weight * (p_tilde[..., 1] * customer).sum() / customer.sum().clamp_min(1)
    else:
        l_cost = p_tilde.new_zeros(())
    l2 = p_tilde.new_zeros(())
    if model is not None and weight_decay:
        l2 = weight_decay * sum((p**2).sum() for p in model.parameters() if p.requires_grad) / 2
    loss = handoff_weight * l_hand + sat_weight * l_sat + senti_weight * l_senti + l_cost + l2
    parts = {
        "handoff": float(l_hand.detach()),
        "sat": float(l_sat.detach()),
        "senti": float(l_senti.detach()),
        "cost": float(l_cost.detach()),
        "l2": float(l2.detach()),
        "total": float(loss.detach()),
    }
    return loss, parts


def gt_score(pred: Sequence[int], gold: Sequence[int], t: int = 1, lamb: float = 0.0) -> float:
    """Golden transfer within tolerance t (GT-I/II/III for t = 1, 2, 3) of one dialogue.

    With Q the gold handoff positions and P the predicted ones: 1 if both are empty, 0 if exactly one
    is empty, else mean over p ∈ P of max over q ∈ Q of exp(−κ·(p−q)²/(2(t + 1e-7)²)) with
    κ = 1/(1 − λ·sign(p−q)).

    Args:
        pred: predicted 0/1 labels per utterance.
        gold: gold 0/1 labels per utterance.
        t: the tolerance in utterances.
        lamb: λ, the asymmetry between early and late transfers (0 in the official code).

    Returns:
        The score in [0, 1].

    Raises:
        ValueError: ``pred`` and ``gold`` differ in length, or |λ| ≥ 1.

    Reference:
        CEM (arXiv 2210.02862), ``utility.py``; the GT metric of RSSN/DAMI.
    """
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold differ in length: {len(pred)} vs {len(gold)}")
    if abs(lamb) >= 1:
        raise ValueError(f"lamb must lie in (-1, 1), got {lamb}")
    p_pos = [i for i, v in enumerate(pred) if int(v) == 1]
    q_pos = [i for i, v in enumerate(gold) if int(v) == 1]
    if not q_pos:
        return 1.0 if not p_pos else 0.0
    if not p_pos:
        return 0.0
    scores = []
    for p in p_pos:
        best = 0.0
        for q in q_pos:
            kappa = 1.0 / (1.0 - lamb * np.sign(p - q))
            best = max(best, math.exp(-kappa * (p - q) ** 2 / (2 * (t + 1e-7) ** 2)))
        scores.append(best)
    return float(np.mean(scores))


def mhch_metrics(
    preds: Sequence[Sequence[int]],
    golds: Sequence[Sequence[int]],
    scores: Sequence[Sequence[float]],
    dia_lens: Sequence[int],
) -> dict[str, float]:
    """The official MHCH metrics over utterances truncated to each dialogue's length (agent turns included).

    Args:
        preds: predicted 0/1 handoff per utterance, per dialogue (padded rows are fine).
        golds: gold 0/1 handoff.
        scores: the handoff score p̃[..., 1] per utterance (unnormalised in the official model).
        dia_lens: utterances per dialogue.

    Returns:
        ``dict(f1, macro_f1, auc, gt1, gt2, gt3, error_cost, acc)``: handoff-class F1, macro-F1 over the two
        classes, ROC AUC (NaN when only one class is present), GT-I/II/III averaged over dialogues, the
        number of false-positive handoffs (error cost) and accuracy.

    Raises:
        ValueError: the four sequences differ in length.

    Reference:
        CEM (arXiv 2210.02862), ``Network.evaluate_batch_cem``; metrics from scikit-learn.
    """
    from sklearn.metrics import accuracy_score, auc, f1_score, roc_curve

    if not len(preds) == len(golds) == len(scores) == len(dia_lens):
        raise ValueError("preds, golds, scores and dia_lens must have one entry per dialogue")
    p_flat, g_flat, s_flat, gts = [], [], [], {1: [], 2: [], 3: []}
    for p, g, s, n in zip(preds, golds, scores, dia_lens):
        n = int(n)
        p, g = [int(v) for v in list(p)[:n]], [int(v) for v in list(g)[:n]]
        p_flat += p
        g_flat += g
        s_flat += [float(v) for v in list(s)[:n]]
        for t in gts:
            gts[t].append(gt_score(p, g, t=t))
    g_arr, p_arr = np.asarray(g_flat), np.asarray(p_flat)
    if len(set(g_flat)) > 1:
        fpr, tpr, _ = roc_curve(g_arr, np.asarray(s_flat))
        auc_v = float(auc(fpr, tpr))
    else:
        auc_v = float("nan")
    return {
        "f1": float(f1_score(g_arr, p_arr, pos_label=1, zero_division=0)),
        "macro_f1": float(f1_score(g_arr, p_arr, average="macro", labels=[0, 1], zero_division=0)),
        "auc": auc_v,
        "gt1": float(np.mean(gts[1])),
        "gt2": float(np.mean(gts[2])),
        "gt3": float(np.mean(gts[3])),
        "error_cost": int(((p_arr == 1) & (g_arr == 0)).sum()),
        "acc": float(accuracy_score(g_arr, p_arr)),
    }
