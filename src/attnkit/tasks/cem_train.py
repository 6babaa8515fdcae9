"""Training and evaluation loops for CEM / the MHCH backbone (the official protocol at any scale).

Adam with no warm-up or decay, best epoch by validation macro-F1, then the test split at that epoch (and
at the final one).

Reference:
    Zhong, Qin, Huang, Li, "Causal-Enhance Module for machine-human chatting handoff" (EMNLP 2022; arXiv
    2210.02862), code github.com/Qrange-group/CEM (``Network.py``, ``config/model/config.cem.json``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from attnkit.data.dialogue import Dialogue, collate_dialogues

from ..train.build import check_finite_loss
from .cem_loss import cem_loss, mhch_metrics
from .cem_model import CEM

__all__ = ["evaluate_cem", "train_cem"]


def _batches(dialogues: Sequence[Dialogue], batch_size: int, max_utterances: int, max_tokens: int):
    for i in range(0, len(dialogues), batch_size):
        yield collate_dialogues(dialogues[i : i + batch_size], max_utterances, max_tokens)


def _forward(model: CEM, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return model(batch["tokens"], batch["sent_len"], batch["dia_len"], batch["role"])


@torch.no_grad()
def evaluate_cem(
    model: CEM, dialogues: Sequence[Dialogue], batch_size: int = 64, max_tokens: int = 64
) -> dict[str, float]:
    """Handoff metrics (:func:`mhch_metrics`) and satisfaction accuracy / macro-F1 on ``dialogues``.

    Args:
        model: a :class:`CEM` (evaluated in eval mode; its mode is restored).
        dialogues: the split.
        batch_size: dialogues per forward pass.
        max_tokens: the cap on tokens per utterance.

    Returns:
        ``mhch_metrics`` keys plus ``sat_acc`` and ``sat_macro_f1``.

    Raises:
        ValueError: an empty split.
    """
    from sklearn.metrics import f1_score

    if not dialogues:
        raise ValueError("evaluate_cem needs at least one dialogue")
    was_training = model.training
    model.eval()
    preds, golds, scores, lens, sat_p, sat_g = [], [], [], [], [], []
    t_max = model.backbone.max_utterances
    for batch in _batches(dialogues, batch_size, t_max, max_tokens):
        out = _forward(model, batch)
        preds += out["handoff"].tolist()
        golds += batch["handoff"].tolist()
        scores += out["p_tilde"][..., 1].tolist()
        lens += batch["dia_len"].tolist()
        sat_p += out["s"].argmax(-1).tolist()
        sat_g += batch["score"].tolist()
    model.train(was_training)
    m = mhch_metrics(preds, golds, scores, lens)
    m["sat_acc"] = float(np.mean(np.asarray(sat_p) == np.asarray(sat_g)))
    m["sat_macro_f1"] = float(f1_score(sat_g, sat_p, average="macro", labels=[0, 1, 2], zero_division=0))
    return m


def train_cem(
    model: CEM,
    train: Sequence[Dialogue],
    val: Sequence[Dialogue],
    test: Sequence[Dialogue] | None = None,
    epochs: int = 120,
    batch_size: int = 64,
    lr: float = 1.5e-3,
    seed: int = 7,
    max_tokens: int = 64,
    select: str = "macro_f1",
    loss_kwargs: dict[str, Any] | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train with Adam on :func:`cem_loss`, pick the epoch with the best validation ``select`` metric.

    Args:
        model: the :class:`CEM` to train (in place; it ends with the best epoch's weights).
        train: training dialogues (shuffled every epoch with ``seed + epoch``).
        val: validation dialogues.
        test: optional test dialogues, evaluated at the best and the final epoch.
        epochs: passes over ``train`` (120 official).
        batch_size: 64 official.
        lr: Adam learning rate (1.5e-3 official).
        seed: seeds the shuffles and dropout.
        max_tokens: cap on tokens per utterance.
        select: the validation metric to maximise (``macro_f1``, or ``sat_macro_f1`` for the SSA head).
        loss_kwargs: keyword arguments of :func:`cem_loss` (``model`` is added for the L2 term).
        log: called with one dict per epoch.

    Returns:
        ``dict(best_epoch, best_val, final_val, test_best, test_final, history)``.

    Raises:
        ValueError: ``epochs`` < 1 or an empty ``train``/``val``.
    """
    if epochs < 1 or not train or not val:
        raise ValueError("train_cem needs epochs >= 1 and non-empty train and val splits")
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    kw = dict(loss_kwargs or {})
    t_max = model.backbone.max_utterances
    best, best_state, best_epoch, history = -float("inf"), None, -1, []
    order = list(train)
    for epoch in range(epochs):
        random.Random(seed + epoch).shuffle(order)
        model.train()
        losses = []
        for batch in _batches(order, batch_size, t_max, max_tokens):
            loss, parts = cem_loss(_forward(model, batch), batch, model=model, **kw)
            check_finite_loss(loss, f"epoch {epoch}, step {len(losses) + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(parts["total"])
        val_m = evaluate_cem(model, val, batch_size, max_tokens)
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            **{f"val_{k}": v for k, v in val_m.items()},
        }
        history.append(row)
        if log:
            log(row)
        score = val_m[select]
        if score > best or best_state is None:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
    final_val = history[-1]
    test_final = evaluate_cem(model, test, batch_size, max_tokens) if test else None
    model.load_state_dict(best_state)
    test_best = evaluate_cem(model, test, batch_size, max_tokens) if test else None
    return {
        "best_epoch": best_epoch,
        "best_val": best,
        "final_val": final_val,
        "test_best": test_best,
        "test_final": test_final,
        "history": history,
    }
