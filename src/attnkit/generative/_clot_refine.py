"""CLoT's explorative self-refinement round [inferred]: generate with condition nouns, self-judge, select, LoRA-tune.

Public names are re-exported by :mod:`attnkit.generative.clot`; see its docstring for the reference and
what is reconstructed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "RefinementResult",
    "format_prompt",
    "discrimination_scores",
    "select_candidates",
    "tune_on_examples",
    "self_refinement_round",
]


@dataclass
class RefinementResult:
    """What one self-refinement round did, per prompt row.

    Attributes:
        nouns: the condition nouns of each candidate.
        candidates: the generated candidates (deduplicated, in generation order).
        scores: the model's own probability that each candidate is the funniest.
        selected: the kept candidates, best first.
        losses: the LoRA training loss at each step (nats per target token).
    """

    nouns: list[list[list[str]]] = field(default_factory=list)
    candidates: list[list[str]] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    selected: list[list[str]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def format_prompt(tokenizer, prompt: str, chat: bool = True) -> str:
    """Wrap ``prompt`` as a user turn with the tokenizer's chat template (if ``chat`` and it has one).

    Args:
        tokenizer: a transformers tokenizer.
        prompt: the plain prompt.
        chat: use the chat template when available.

    Returns:
        The text to tokenize (with the assistant-turn opening when templated).
    """
    if chat and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def _clean(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0].strip(" \"'") if lines else ""


@torch.no_grad()
def _generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float
) -> list[str]:
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    return [
        _clean(t)
        for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    ]


def _letter_ids(tokenizer, letter: str) -> list[int]:
    ids = []
    for variant in (letter, " " + letter):
        enc = tokenizer.encode(variant, add_special_tokens=False)
        if len(enc) == 1:
            ids.append(enc[0])
    if not ids:
        raise ValueError(f"the tokenizer has no single token for option letter {letter!r}")
    return ids


@torch.no_grad()
def discrimination_scores(
    model, tokenizer, row: Mapping[str, Any], candidates: Sequence[str], chat: bool = True
) -> list[float]:
    """Score candidates with the model's own choice prompt: the probability of each option's letter.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer.
        row: the Oogiri-GO-style prompt row the candidates answer.
        candidates: the responses (2–26).
        chat: wrap the prompt with the tokenizer's chat template when it has one.

    Returns:
        One probability per candidate (summing to 1 over the letters; the letter with and without a
        leading space both count).

    Raises:
        ValueError: fewer than 2 candidates.
    """
    from attnkit.generative.clot import _CHOICE, _letters, _options_prompt

    if len(candidates) < 2:
        raise ValueError(f"need at least 2 candidates to discriminate, got {len(candidates)}")
    prompt = format_prompt(tokenizer, _options_prompt(row, list(candidates), _CHOICE), chat)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    logp = torch.log_softmax(model(ids).logits[0, -1].float(), -1)  # (V,)
    per = torch.stack(
        [torch.logsumexp(logp[_letter_ids(tokenizer, c)], 0) for c in _letters(len(candidates))]
    )
    return per.softmax(0).tolist()


def select_candidates(
    candidates: Sequence[str], scores: Sequence[float], keep: int = 1, min_score: float | None = None
) -> list[str]:
    """The selection step: drop empty and duplicate candidates, keep the ``keep`` best-scored ones.

    Args:
        candidates: generated texts.
        scores: one score per candidate (higher is better).
        keep: how many to keep.
        min_score: optional floor; candidates below it are never kept.

    Returns:
        The kept texts, best first (ties in input order). Duplicates (equal after stripping and
        lower-casing) count once, with the text and score of the best-scored one.

    Raises:
        ValueError: lengths differ or ``keep`` < 1.
    """
    if len(candidates) != len(scores):
        raise ValueError(f"candidates ({len(candidates)}) and scores ({len(scores)}) differ in length")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    best: dict[str, tuple[float, int, str]] = {}
    for i, (c, s) in enumerate(zip(candidates, scores)):
        key = " ".join(c.lower().split())
        if not key or (min_score is not None and s < min_score):
            continue
        if key not in best or s > best[key][0]:
            best[key] = (float(s), best[key][1] if key in best else i, c)
    ranked = sorted(best.values(), key=lambda t: (-t[0], t[1]))
    return [c for _, _, c in ranked[:keep]]


def tune_on_examples(
    model,
    tokenizer,
    examples: Sequence[Mapping[str, str]],
    steps: int,
    optimizer: torch.optim.Optimizer,
    chat: bool = True,
) -> list[float]:
    """Tune the trainable (LoRA) parameters on prompt/target pairs, the loss on the target tokens only.

    Args:
        model: the causal LM (adapter parameters trainable).
        tokenizer: its tokenizer.
        examples: ``{"prompt", "target"}`` dicts (e.g. :func:`oogiri_generation_example`); all form one batch.
        steps: optimizer steps.
        optimizer: over the trainable parameters.
        chat: wrap prompts with the chat template.

    Returns:
        The loss (nats per target token) at each step.
    """
    eos = tokenizer.eos_token or ""
    seqs, labels = [], []
    for ex in examples:
        p = tokenizer(format_prompt(tokenizer, ex["prompt"], chat), add_special_tokens=False)["input_ids"]
        t = tokenizer(ex["target"] + eos, add_special_tokens=False)["input_ids"]
        seqs.append(p + t)
        labels.append([-100] * len(p) + t)  # loss on the answer only
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)  # (B, T)
    lab = torch.tensor([s + [-100] * (width - len(s)) for s in labels], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def self_refinement_round(
    model,
    tokenizer,
    rows: Sequence[Mapping[str, Any]],
    noun_pool: Sequence[str],
    n_candidates: int = 4,
    nouns_per_candidate: int = 2,
    keep: int = 1,
    steps: int = 2,
    lr: float = 1e-4,
    max_new_tokens: int = 24,
    temperature: float = 0.9,
    top_p: float = 0.95,
    seed: int = 0,
    chat: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
) -> RefinementResult:
    """One explorative self-refinement round of CLoT [inferred], on a LoRA-adapted causal LM.

    For each prompt row: draw ``n_candidates`` sets of condition nouns from ``noun_pool``, generate one
    candidate per set (sampling; the instruction paraphrase cycles), score the candidates with the model's
    own choice prompt (:func:`discrimination_scores`), keep the best ``keep``
    (:func:`select_candidates`); then tune the trainable (LoRA) parameters for ``steps`` steps on
    generation examples *without* the nouns whose targets are the kept candidates.

    Args:
        model: a transformers causal LM with trainable adapter parameters (``peft.get_peft_model``).
        tokenizer: its tokenizer (a pad token is needed; the EOS token is used when none is set).
        rows: prompt rows in the Oogiri-GO layout (``type``, ``question``, ``image``).
        noun_pool: nouns to condition on.
        n_candidates: candidates per row (≥ 2).
        nouns_per_candidate: nouns drawn per candidate.
        keep: candidates kept per row.
        steps: optimizer steps on the kept set (one batch of all of them).
        lr: AdamW learning rate when no ``optimizer`` is given.
        max_new_tokens: generation length.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        seed: noun draws and sampling.
        chat: use the tokenizer's chat template.
        optimizer: an optimizer over the trainable parameters (default AdamW(lr)).

    Returns:
        A :class:`RefinementResult`.

    Raises:
        ValueError: no trainable parameters, an empty ``rows``/noun pool, or ``n_candidates`` < 2.
    """
    from attnkit.generative.clot import oogiri_generation_example

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "model has no trainable parameters: wrap it with peft.get_peft_model(model, clot_lora_config(...))"
        )
    if not rows or len(noun_pool) < nouns_per_candidate:
        raise ValueError("rows must be non-empty and noun_pool must hold at least nouns_per_candidate nouns")
    if n_candidates < 2:
        raise ValueError(f"n_candidates must be >= 2, got {n_candidates}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rng = random.Random(seed)
    torch.manual_seed(seed)
    res = RefinementResult()
    model.eval()
    for row in rows:
        nouns = [rng.sample(list(noun_pool), nouns_per_candidate) for _ in range(n_candidates)]
        prompts = [
            format_prompt(tokenizer, oogiri_generation_example(row, n, paraphrase=i % 3)["prompt"], chat)
            for i, n in enumerate(nouns)
        ]
        cands = _generate(model, tokenizer, prompts, max_new_tokens, temperature, top_p)
        uniq = [c for i, c in enumerate(cands) if c and c not in cands[:i]]
        scores = (
            discrimination_scores(model, tokenizer, row, uniq, chat) if len(uniq) >= 2 else [1.0] * len(uniq)
        )
        res.nouns.append(nouns)
        res.candidates.append(uniq)
        res.scores.append(scores)
        res.selected.append(select_candidates(uniq, scores, keep) if uniq else [])
    examples = [
        oogiri_generation_example({**row, "text": s}) for row, kept in zip(rows, res.selected) for s in kept
    ]
    if examples:
        opt = optimizer or torch.optim.AdamW(params, lr=lr)
        res.losses = tune_on_examples(model, tokenizer, examples, steps, opt, chat)
    return res
