"""CLoT (Creative Leap-of-Thought): Oogiri-GO examples, the LoRA recipe and one explorative self-refinement round.

CLoT teaches a multimodal LLM the Oogiri humour game in two steps: *LoT-oriented instruction tuning* on
Oogiri-GO (generation and discrimination examples), then *explorative self-refinement*: the model writes
candidates conditioned on seemingly unrelated nouns, judges them with its own discrimination skill, and is
tuned on the ones it prefers. Only the inference demo was released; the discrimination templates, the noun
pool, the round count and every hyper-parameter are [unknown], so the round below is a documented,
working reconstruction [inferred] on any transformers causal LM with a peft LoRA adapter.

Oogiri-GO rows (dataset card ``zhongshsh/CLoT-Oogiri-GO``) are ``{type, question, image, text, star}``
with ``type`` in ``I2T`` (image → text), ``T2T`` (question → text), ``IT2T`` (image and question → text)
and ``star`` the number of likes.

Reference:
    Let's Think Outside the Box: Exploring Leap-of-Thought in Large Language Models with Creative Humor
    Generation, Zhong et al., CVPR 2024, arXiv 2312.02439; official inference code github.com/sail-sg/CLoT
    (``inference.py``, ``gradio_demo.py``); released model ``zhongshsh/CLoT-cn`` (Qwen-VL-Chat + LoRA
    r = 64, α = 16, dropout 0.05 on ``c_attn`` and ``attn.c_proj``).

Deviations:
    The prompts are English renderings of the demo's Chinese persona, the three instruction paraphrases per
    modality and the reply cue; the condition-noun clause, the discrimination (choice/ranking) templates,
    the scoring by the answer letter's log-probability and the selection rule are [inferred].
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from attnkit._optional import require
from attnkit.generative._clot_refine import (
    RefinementResult,
    discrimination_scores,
    format_prompt,
    select_candidates,
    self_refinement_round,
    tune_on_examples,
)

__all__ = [
    "PERSONA",
    "INSTRUCTIONS",
    "REPLY_CUE",
    "oogiri_generation_example",
    "oogiri_choice_example",
    "oogiri_ranking_example",
    "clot_lora_config",
    "format_prompt",
    "discrimination_scores",
    "select_candidates",
    "tune_on_examples",
    "self_refinement_round",
    "RefinementResult",
]

PERSONA = (
    "You are a humour expert who knows the memes and catchphrases of the internet and of everyday life, "
    "and loves to bring people joy with your sense of humour. Let's think outside the box."
)
"""The demo's persona (``base_prompt`` in ``gradio_demo.py``), in English."""

INSTRUCTIONS: dict[str, tuple[str, str, str]] = {
    "I2T": (
        "Read the picture carefully and write a surprising and funny sentence.",
        "Based on the picture, come up with an unexpected and comical sentence.",
        "Examine this picture closely and create a surprising and hilarious sentence.",
    ),
    "T2T": (
        "Understand the given question carefully and come up with a surprising and funny answer.",
        "Interpret the given question carefully and give an unexpected and comical answer.",
        "Savour the given question carefully and devise a surprising and funny reply.",
    ),
    "IT2T": (
        "Read the picture and the text in it carefully and write a surprising and funny sentence.",
        "Read the picture and its text carefully and fill in the marked part with a surprising and funny sentence.",
        "Savour the content of the picture and give an interesting and funny line for the marked part.",
    ),
}
"""Three instruction paraphrases per Oogiri-GO type, as in ``gradio_demo.py`` (English)."""

REPLY_CUE = "Reply: a response that meets the requirements is"
"""The demo's reply cue (``last_prompt``)."""

_CHOICE = "Which of the following responses is the funniest and most creative? Answer with one letter."
_RANKING = "Rank the following responses from funniest to least funny. Answer with the letters in order."


def _question_block(row: Mapping[str, Any]) -> str:
    kind = row.get("type", "T2T")
    if kind not in INSTRUCTIONS:
        raise ValueError(f"row type must be one of {sorted(INSTRUCTIONS)}, got {kind!r}")
    parts = []
    if kind in ("I2T", "IT2T"):
        parts.append(f"Picture 1: <img>{row.get('image', '')}</img>")
    if kind in ("T2T", "IT2T"):
        if not row.get("question"):
            raise ValueError(f"a {kind} row needs a non-empty 'question'")
        parts.append(f"Question: {row['question']}")
    return "\n".join(parts)


def oogiri_generation_example(
    row: Mapping[str, Any], condition_nouns: Sequence[str] = (), paraphrase: int = 0
) -> dict[str, Any]:
    """A generation example: persona, instruction, the picture and/or question, optional condition nouns.

    Args:
        row: an Oogiri-GO row (``type``, ``question``, ``image``, ``text``, ``star``).
        condition_nouns: nouns the answer should link to (the "leap" hint of self-refinement) [inferred].
        paraphrase: which of the three instruction paraphrases (0–2).

    Returns:
        ``{"prompt", "target", "type"}``; ``target`` is the row's ``text`` (empty if absent).

    Raises:
        ValueError: unknown ``type``, a missing question, or ``paraphrase`` outside 0–2.

    Reference:
        The demo's message layout in ``gradio_demo.py`` (arXiv 2312.02439).
    """
    if paraphrase not in (0, 1, 2):
        raise ValueError(f"paraphrase must be 0, 1 or 2, got {paraphrase}")
    block = _question_block(row)
    kind = row.get("type", "T2T")
    hint = f"\nUse these words in your answer: {', '.join(condition_nouns)}." if condition_nouns else ""
    prompt = f"{PERSONA}\nUser: {INSTRUCTIONS[kind][paraphrase]}\n{block}{hint}\n{REPLY_CUE}\n"
    return {"prompt": prompt, "target": str(row.get("text", "")), "type": kind}


def _letters(n: int) -> list[str]:
    if not 1 <= n <= 26:
        raise ValueError(f"between 1 and 26 candidates are supported, got {n}")
    return [chr(ord("A") + i) for i in range(n)]


def _options_prompt(row: Mapping[str, Any], texts: Sequence[str], ask: str) -> str:
    opts = "\n".join(f"{letter}. {t}" for letter, t in zip(_letters(len(texts)), texts))
    return f"{PERSONA}\nUser: {ask}\n{_question_block(row)}\n{opts}\nAnswer:"


def _same_question(rows: Sequence[Mapping[str, Any]]) -> None:
    if len(rows) < 2:
        raise ValueError(f"need at least 2 rows (candidates), got {len(rows)}")
    keys = {(r.get("type", "T2T"), r.get("question"), str(r.get("image"))) for r in rows}
    if len(keys) != 1:
        raise ValueError("all rows must answer the same question/image")


def oogiri_choice_example(rows: Sequence[Mapping[str, Any]], k: int, seed: int = 0) -> dict[str, Any]:
    """A kT1 discrimination example: k responses to one question, the label is the one with most stars.

    Args:
        rows: responses to the same question (Oogiri-GO rows with ``star``).
        k: options shown (2T1, 3T1, 4T1 …); ``k <= len(rows)``.
        seed: picks the k rows and their order.

    Returns:
        ``{"prompt", "target", "options", "label"}``: ``target`` the label letter, ``options`` the texts
        shown, ``label`` the index of the most-starred option (the first of equals in display order).

    Raises:
        ValueError: fewer than 2 rows, rows of different questions, ``k`` out of range, missing stars.
    """
    _same_question(rows)
    if not 2 <= k <= len(rows):
        raise ValueError(f"k must be in [2, {len(rows)}], got {k}")
    if any("star" not in r for r in rows):
        raise ValueError("every row needs a 'star' count")
    picked = random.Random(seed).sample(list(rows), k)
    stars = [float(r["star"]) for r in picked]
    label = stars.index(max(stars))
    texts = [str(r["text"]) for r in picked]
    prompt = _options_prompt(picked[0], texts, _CHOICE)
    return {"prompt": prompt, "target": _letters(k)[label], "options": texts, "label": label}


def oogiri_ranking_example(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A ranking example: all responses listed, the target their letters by stars, most first.

    Args:
        rows: responses to the same question, with ``star``.

    Returns:
        ``{"prompt", "target", "options", "order"}``; ``order`` the option indices by descending stars
        (stable for equal stars), ``target`` the letters joined by ``" > "``.

    Raises:
        ValueError: as :func:`oogiri_choice_example`.
    """
    _same_question(rows)
    if any("star" not in r for r in rows):
        raise ValueError("every row needs a 'star' count")
    texts = [str(r["text"]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: -float(rows[i]["star"]))
    letters = _letters(len(rows))
    return {
        "prompt": _options_prompt(rows[0], texts, _RANKING),
        "target": " > ".join(letters[i] for i in order),
        "options": texts,
        "order": order,
    }


def clot_lora_config(
    target_modules: Sequence[str] = ("c_attn", "attn.c_proj"),
    r: int = 64,
    alpha: int = 16,
    dropout: float = 0.05,
):
    """The released CLoT LoRA recipe as a ``peft.LoraConfig`` (task ``CAUSAL_LM``).

    Args:
        target_modules: module names to adapt; the default is Qwen-VL-Chat's (``c_attn``,
            ``attn.c_proj``); for Llama-style models (SmolLM2) use ``("q_proj", "k_proj", "v_proj", "o_proj")``.
        r: LoRA rank (64).
        alpha: LoRA α (16).
        dropout: LoRA dropout (0.05).

    Returns:
        ``peft.LoraConfig``. On SmolLM2-135M with q/k/v/o it gives 7,372,800 trainable parameters.

    Raises:
        ImportError: ``peft`` is missing (``attnkit[llm]``).
        ValueError: ``r`` < 1 or no target modules.
    """
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    if not target_modules:
        raise ValueError("target_modules must name at least one module")
    peft = require("peft", extra="llm")
    return peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        task_type="CAUSAL_LM",
    )
