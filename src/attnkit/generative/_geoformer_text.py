"""UniGeo / Geoformer text side: problem normalisation, solution tokens and MEP pre-training examples.

Public names are re-exported by :mod:`attnkit.generative.geoformer`.

Reference:
    UniGeo: Unifying Geometry Logical Reasoning via Reformulating Mathematical Expression, Chen et al.,
    EMNLP 2022, arXiv 2212.02746; official code github.com/chen-judge/UniGeo (``data_utils.py``,
    ``preprocess.py``, ``pretrain_data.py``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

__all__ = ["normalize_geometry_text", "solving_tokens", "corrupt_spans", "mep_example"]

# Symbols the official text split isolates (the ``+-/`` there is a character *range*: + , - . /).
_SPLIT = re.compile(r"([=≠≈+-/△∠∥⊙☉⊥⟂≌≅▱∽⁀⌒;,:.•?])")
_WORDS = {
    "≠": "not-equal",
    "≈": "approximate",
    "△": "triangle",
    "∠": "angle",
    "∥": "parallel",
    "⊙": "circle",
    "☉": "circle",
    "⊥": "perpendicular",
    "⟂": "perpendicular",
    "≌": "congruent",
    "≅": "congruent",
    "▱": "parallelogram",
    "∽": "similar",
    "⁀": "arc",
    "⌒": "arc",
}
_SOLVING_WORDS = {**_WORDS, "/ /": "parallel", "∵": "because", "∴": "therefore", "²": "square", "√": "root"}


def _split_elements(tokens: Sequence[str]) -> list[str]:
    """Split point names into letters (``ABC`` → ``A B C``); keep ``N_*``, ``NS_*``, ``frac``, Title words."""
    out: list[str] = []
    for t in tokens:
        if "N_" in t or "NS_" in t or "frac" in t or t.istitle() or not re.search(r"[A-Z]", t):
            out.append(t)
        else:
            out.extend(t)
    return out


def normalize_geometry_text(text: str) -> str:
    """Normalise a UniGeo problem text as Geoformer's input: symbols to words, point names to letters.

    Args:
        text: the English problem, e.g. ``"In △ABC, ∠C=90°"``.

    Returns:
        Space-separated tokens, e.g. ``"In triangle A B C , angle C = 90°"``.

    Raises:
        TypeError: ``text`` is not a string.

    Reference:
        ``process_english_text`` in UniGeo's ``Geoformer/src/data_utils.py`` (arXiv 2212.02746).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    out = " ".join(_split_elements(" ".join(_SPLIT.split(text)).split()))
    for k, v in _WORDS.items():
        out = out.replace(k, v)
    return out


def solving_tokens(solution: str) -> tuple[list[str], list[float]]:
    """Tokenise a (GeoQA, Chinese) worked solution for MEP's solving prediction, numbers as ``NS_k``.

    Args:
        solution: the solution text; everything from ``故选`` ("so choose") on is dropped.

    Returns:
        ``(tokens, numbers)``: the tokens with each distinct number replaced by ``NS_<k>``, and the numbers.

    Reference:
        ``process_Chinese_solving`` in UniGeo's ``data_utils.py``.
    """
    if not isinstance(solution, str):
        raise TypeError(f"solution must be a str, got {type(solution).__name__}")
    end = solution.find("故选")
    text = solution[:end] if end >= 0 else solution  # the official slices [:-1] when absent: a bug
    for d in ["^{°}", "{", "}", "°", "cm", "m", "米", ",", ":", "．", "、", "′", "~", "″", "【", "】", "$"]:
        text = text.replace(d, " ")
    text = re.sub("[\u4e00-\u9fa5]+", " ", text)
    pattern = r"([=≠≈+-]|π|×|\\frac|\\sqrt|\\cdot|√|[∵∴△∠∥⊙☉⊥⟂≌≅▱∽⁀⌒]|[.,，：；;,:.•?]|\d+\.?\d*|)"
    parts = _split_elements([p for p in re.split(pattern, text) if p and p.strip()])
    tokens, numbers = [], []
    for t in parts:
        if re.search(r"\d", t):
            v = float(t)
            if v not in numbers:
                numbers.append(v)
            tokens.append(f"NS_{numbers.index(v)}")
        else:
            tokens.append(t)
    joined = " ".join(tokens)
    for k, v in _SOLVING_WORDS.items():
        joined = joined.replace(k, v)
    return joined.split(), numbers


def corrupt_spans(text: str, rng: random.Random, mask_ratio: float = 0.3) -> str:
    """BART-style span masking: ``mask_ratio`` of the words masked, each contiguous run as one ``<mask>``.

    Args:
        text: space-separated words.
        rng: the random generator.
        mask_ratio: fraction of words masked (at least one).

    Returns:
        The corrupted text.

    Raises:
        ValueError: empty ``text`` or ``mask_ratio`` outside (0, 1].

    Reference:
        ``corrupt_bart`` in UniGeo's ``preprocess.py``.
    """
    words = text.split()
    if not words:
        raise ValueError("text must contain at least one word")
    if not 0 < mask_ratio <= 1:
        raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
    masked = set(rng.sample(range(len(words)), int(max(mask_ratio * len(words), 1))))
    out: list[str] = []
    for i, w in enumerate(words):
        if i not in masked:
            out.append(w)
        elif i - 1 not in masked:
            out.append("<mask>")
    return " ".join(out)


def mep_example(
    problem: str,
    solution: str,
    rng: random.Random | int | None = None,
    mask_ratio: float = 0.3,
    p_solving: float = 0.5,
) -> dict[str, str]:
    """One MEP pre-training pair: solving prediction (probability ``p_solving``) or span denoising.

    Args:
        problem: the English problem text (normalised here).
        solution: the worked solution text (see :func:`solving_tokens`).
        rng: a ``random.Random`` or a seed.
        mask_ratio: the denoising mask ratio (the official 0.3).
        p_solving: probability of the solving-prediction task (the official 0.5).

    Returns:
        ``{"task", "source", "target"}``: task ``"solving"`` (source ``"solving prediction: <problem>"``,
        target the ``NS_k`` solution tokens) or ``"denoise"`` (source ``"denoise text: <masked>"``, target
        the problem).

    Raises:
        ValueError: ``p_solving`` outside [0, 1].

    Reference:
        ``GeoPretrainDataset`` in UniGeo's ``pretrain_data.py``.
    """
    if not 0 <= p_solving <= 1:
        raise ValueError(f"p_solving must be in [0, 1], got {p_solving}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    text = normalize_geometry_text(problem)
    if rng.random() < p_solving:
        return {
            "task": "solving",
            "source": "solving prediction: " + text,
            "target": " ".join(solving_tokens(solution)[0]),
        }
    return {
        "task": "denoise",
        "source": "denoise text: " + corrupt_spans(text, rng, mask_ratio),
        "target": text,
    }
