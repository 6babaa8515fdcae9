"""UniGeo / Geoformer: geometry-text normalisation, the program executor, answer selection and MEP examples.

Geoformer solves UniGeo's calculation problems by generating a prefix *program* (``g_3 n0 n1`` = add the
first two numbers of the problem) that an executor runs; an answer is chosen by running the beams until
one lands on one of the four options. Proving problems are scored by exact match of the proof sequence.
This module is the model-free part: it runs on the official data format, with no T5 needed.

Operands: ``N_i`` (``n<i>``) the i-th number in the problem, ``V_i`` (``v<i>``) the i-th earlier result,
``C_i`` (``c<i>``) the constants ``[30, 60, 90, 180, 360, π, 0.618]``. Operators are ``g_<index>`` (or
their official names, ``g_add``): see :data:`OPERATORS`. Trigonometry is in degrees.

Reference:
    UniGeo: Unifying Geometry Logical Reasoning via Reformulating Mathematical Expression, Chen et al.,
    EMNLP 2022, arXiv 2212.02746; official code github.com/chen-judge/UniGeo
    (``Geoformer/src/ManualProgram/operators.py``, ``eval_equ.py``, ``geo.py``, ``data_utils.py``,
    ``preprocess.py``).

Deviations:
    The official executor has two bugs, kept behind ``faithful=True``: an invalid operation (``sin 20°``)
    yields ``False``, which later arithmetic treats as 0, where attnkit rejects the whole program
    (``None``); operand indices are read from their *last digit only* (``N_10`` is read as ``N_0``), where
    attnkit parses the full index. When several options lie within the tolerance, the official evaluation
    keeps the last one; attnkit keeps the nearest (``faithful=True``: the last).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from attnkit.generative._geoformer_text import (
    corrupt_spans,
    mep_example,
    normalize_geometry_text,
    solving_tokens,
)
from attnkit.generative._unigeo_io import load_unigeo_rows

__all__ = [
    "CONSTANTS",
    "OPERATORS",
    "normalize_geometry_text",
    "solving_tokens",
    "execute_program",
    "answer_from_beams",
    "mep_example",
    "corrupt_spans",
    "patch_boxes",
    "GeoformerInputs",
    "VisualEmbedding",
    "evaluate_unigeo",
    "load_unigeo_rows",
]

CONSTANTS: tuple[float, ...] = (30, 60, 90, 180, 360, math.pi, 0.618)
"""The official constant operands ``C_0 … C_6``."""


def _deg_trig(fn: Callable[[float], float], lo: float, hi: float) -> Callable[[float], float | None]:
    def op(a):
        return fn(math.radians(a)) if a % 15 == 0 and lo <= a <= hi else None

    return op


def _inv_trig(fn: Callable[[float], float]) -> Callable[[float], float | None]:
    def op(a):
        return math.degrees(fn(a)) if -1 < a < 1 else None

    return op


# (official name, arity, function returning None when the operation is invalid), in index order.
OPERATORS: tuple[tuple[str, int, Callable[..., float | None]], ...] = (
    ("g_equal", 1, lambda a: a),
    ("g_double", 1, lambda a: 2 * a),
    ("g_half", 1, lambda a: a / 2),
    ("g_add", 2, lambda a, b: a + b),
    ("g_minus", 2, lambda a, b: math.fabs(a - b)),
    ("g_sin", 1, _deg_trig(math.sin, 0, 180)),
    ("g_cos", 1, _deg_trig(math.cos, 0, 180)),
    ("g_tan", 1, _deg_trig(math.tan, 5, 85)),
    ("g_asin", 1, _inv_trig(math.asin)),
    ("g_acos", 1, _inv_trig(math.acos)),
    ("gougu_add", 2, lambda a, b: math.sqrt(a * a + b * b)),
    ("gougu_minus", 2, lambda a, b: math.sqrt(math.fabs(a * a - b * b)) if a != b else None),
    ("g_bili", 3, lambda a, b, c: a / b * c if a > 0 and b > 0 and c > 0 else None),
    ("g_mul", 2, lambda a, b: a * b),
    ("g_divide", 2, lambda a, b: a / b if a > 0 and b > 0 else None),
    ("cal_circle_area", 1, lambda a: a * a * math.pi),
    ("cal_circle_perimeter", 1, lambda a: 2 * math.pi * a),
    ("cal_cone", 2, lambda a, b: a * b * math.pi),
)
"""The 18 operators: ``(official name, arity, fn)``; ``fn`` returns None where the official returns False."""

_OP_BY_NAME = {name: i for i, (name, _, _) in enumerate(OPERATORS)}
_OPERAND = re.compile(r"^([NVC])_?(\d+)$", re.IGNORECASE)


def _operator_index(token: str) -> int | None:
    if token in _OP_BY_NAME:
        return _OP_BY_NAME[token]
    m = re.fullmatch(r"g_(\d+)", token)
    if m and int(m.group(1)) < len(OPERATORS):
        return int(m.group(1))
    return None


def _operand(token: str, numbers: Sequence[float], results: list, faithful: bool):
    m = _OPERAND.match(token)
    if m is None:
        return None
    kind, digits = m.group(1).upper(), m.group(2)
    idx = int(digits[-1]) if faithful else int(digits)  # the official reads the last digit only
    pool = {"N": numbers, "V": results, "C": CONSTANTS}[kind]
    return pool[idx] if idx < len(pool) else None


def execute_program(
    tokens: Sequence[str] | str, numbers: Sequence[float], faithful: bool = False
) -> list[float] | None:
    """Run a Geoformer prefix program and return every intermediate result.

    Args:
        tokens: the program, as tokens (``["g_3", "n0", "n1"]``) or one string split on spaces/commas.
            Operators: ``g_<index>`` or the official names; operands ``n<i>``/``N_<i>``, ``v<i>``/``V_<i>``,
            ``c<i>``/``C_<i>``.
        numbers: the problem's numbers ``N_0, N_1, …``.
        faithful: reproduce the official executor: invalid operations give ``False`` (then 0 in later
            arithmetic) and operand indices use their last digit only.

    Returns:
        The results ``[V_0, V_1, …]`` (the answer is the last), or None for a malformed program (unknown
        operator or operand, missing operands, an out-of-range index, a math error) and, unless
        ``faithful``, for an invalid operation. With ``faithful=True`` an invalid operation appears as
        ``False`` in the list.

    Raises:
        TypeError: ``tokens`` is neither a string nor a sequence of strings.

    Reference:
        ``Equations.excuate_equation`` and ``operators.py`` of UniGeo (arXiv 2212.02746).

    Deviations:
        See the module docstring (``faithful``).
    """
    if isinstance(tokens, str):
        tokens = [t for t in re.split(r"[\s,]+", tokens) if t]
    if not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens must be a string or a sequence of strings")
    results: list = []
    i = 0
    while i < len(tokens):
        op = _operator_index(tokens[i])
        if op is None:
            return None
        _, arity, fn = OPERATORS[op]
        if i + arity >= len(tokens):
            return None
        args = [_operand(t, numbers, results, faithful) for t in tokens[i + 1 : i + 1 + arity]]
        if any(a is None for a in args):
            return None
        try:
            value = fn(*args)
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            return None  # the official evaluation catches every exception as "no result"
        if value is None:
            if not faithful:
                return None
            value = False
        results.append(value)
        i += arity + 1
    return results


def answer_from_beams(
    beams: Sequence[Sequence[str] | str],
    numbers: Sequence[float],
    options: Sequence[float | None],
    tol: float = 1e-3,
    faithful: bool = False,
) -> int | None:
    """Pick a multiple-choice answer: the first beam whose program's result is within ``tol`` of an option.

    Args:
        beams: the generated programs, best first (the official evaluation uses 10 beams).
        numbers: the problem's numbers.
        options: the four option values (``choice_nums``; None for a non-numeric option).
        tol: absolute tolerance (the official 1e-3).
        faithful: official executor and, among several matching options, the last one.

    Returns:
        The index of the chosen option, or None when no beam lands on an option.

    Raises:
        ValueError: ``tol`` is not positive.

    Reference:
        ``evaluate_calculation`` in UniGeo's ``geo.py``.
    """
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    for beam in beams:
        res = execute_program(beam, numbers, faithful=faithful)
        if not res:
            continue
        hits = [
            (abs(res[-1] - o), j) for j, o in enumerate(options) if o is not None and abs(res[-1] - o) < tol
        ]
        if hits:
            return hits[-1][1] if faithful else min(hits)[1]
    return None


def patch_boxes(patch_num: int = 7):
    """Geoformer's visual-token boxes: a ``patch_num``² grid of ``(x1, y1, x2, y2, area)`` in [0, 1].

    Args:
        patch_num: grid side (7 for ResNet-101 layer 4 at 224 px).

    Shape:
        Returns ``(patch_num², 5)``, row-major over the grid.

    Returns:
        A float32 tensor.

    Deviations:
        The official ``get_area`` reads the boxes as ``(x1, x2, y1, y2)`` although they are
        ``(x1, y1, x2, y2)``, so its "area" column is ``(y2 − x2)(y1 − x1)``; attnkit uses the true area.
    """
    if patch_num < 1:
        raise ValueError(f"patch_num must be >= 1, got {patch_num}")
    i, j = torch.meshgrid(torch.arange(patch_num), torch.arange(patch_num), indexing="ij")
    x1, y1 = j.flatten() / patch_num, i.flatten() / patch_num  # (P²,)
    x2, y2 = x1 + 1 / patch_num, y1 + 1 / patch_num
    return torch.stack([x1, y1, x2, y2, (x2 - x1) * (y2 - y1)], dim=1).float()


class GeoformerInputs:
    """Build Geoformer's encoder inputs from one UniGeo row: prefixed normalised text and box features.

    Args:
        patch_num: visual grid side (7).

    Reference:
        ``GeoDataset`` in UniGeo's ``geo_data.py``: prefixes ``"Calculation: "`` and ``"Proving: "``.
    """

    def __init__(self, patch_num: int = 7):
        self.patch_num = patch_num
        self.boxes = patch_boxes(patch_num)  # (P², 5)

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``{"form", "source_text", "target_text", "boxes"}`` for a calculation or proving row."""
        if "manual_program" in row:
            src = "Calculation: " + normalize_geometry_text(row["English_problem"])
            return {
                "form": "calculation",
                "source_text": src,
                "target_text": " ".join(row["manual_program"]),
                "boxes": self.boxes,
            }
        if "proving_sequence" in row:
            src = "Proving: " + row["input_text"]
            return {
                "form": "proving",
                "source_text": src,
                "target_text": " ".join(row["proving_sequence"]),
                "boxes": self.boxes,
            }
        raise ValueError(
            "row is neither a UniGeo calculation (manual_program) nor a proving (proving_sequence) row"
        )


class VisualEmbedding(torch.nn.Module):
    """VL-T5's visual-token embedding: ``Linear(feat_dim → d)(feature) + Linear(5 → d)(box)``, then a norm.

    Args:
        feat_dim: visual feature width (2048 for ResNet-101 layer 4; a patch's pixel count for a smoke model).
        d_model: the T5 width.
        layer_norm: apply an RMS norm (T5's ``T5LayerNorm``) to each part, as ``use_vis_layer_norm``.

    Shape:
        ``feats (B, V, feat_dim)``, ``boxes (B, V, 5)`` → ``(B, V, d_model)``.

    Reference:
        ``VisualEmbedding`` in UniGeo's ``Geoformer/src/modeling_t5.py`` (from VL-T5, arXiv 2102.02779).
    """

    def __init__(self, feat_dim: int, d_model: int, layer_norm: bool = True):
        super().__init__()
        self.feat = torch.nn.Linear(feat_dim, d_model)
        self.pos = torch.nn.Linear(5, d_model)
        self.feat_norm = torch.nn.RMSNorm(d_model, eps=1e-6) if layer_norm else torch.nn.Identity()
        self.pos_norm = torch.nn.RMSNorm(d_model, eps=1e-6) if layer_norm else torch.nn.Identity()

    def forward(self, feats: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Embed visual tokens from their features and ``(x1, y1, x2, y2, area)`` boxes."""
        return self.feat_norm(self.feat(feats)) + self.pos_norm(self.pos(boxes))

    def encoder_inputs(
        self,
        embed_tokens: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        feats,
        boxes,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Geoformer's encoder input: the text embeddings followed by the visual tokens.

        Args:
            embed_tokens: the T5 shared embedding (``model.get_input_embeddings()``).
            input_ids: ``(B, T)`` text ids.
            attention_mask: ``(B, T)``.
            feats: ``(B, V, feat_dim)``.
            boxes: ``(B, V, 5)`` or ``(V, 5)``.

        Returns:
            ``(inputs_embeds (B, T + V, d), attention_mask (B, T + V))`` for ``model(inputs_embeds=...)``
            or ``model.generate(inputs_embeds=...)``.
        """
        if boxes.dim() == 2:
            boxes = boxes.expand(feats.shape[0], -1, -1)
        vis = self(feats, boxes.to(feats))  # (B, V, d)
        embeds = torch.cat([embed_tokens(input_ids), vis], 1)  # (B, T + V, d)
        mask = torch.cat([attention_mask, attention_mask.new_ones(vis.shape[:2])], 1)
        return embeds, mask


def evaluate_unigeo(
    predictions: Sequence[Sequence[str]],
    dataset_rows: Sequence[Mapping[str, Any]],
    calculation_types: Mapping[Any, str] | None = None,
    faithful: bool = False,
) -> dict[str, float | int]:
    """Score Geoformer beams on UniGeo rows in the official format.

    Args:
        predictions: for each row, its beams (strings, best first).
        dataset_rows: official rows: calculation rows carry ``numbers``, ``choice_nums``, ``label``
            (and ``id``); proving rows carry ``proving_sequence`` and ``problem_type``.
        calculation_types: optional ``{id: "angle" | "length" | "other"}`` (the official
            ``sub_dataset_dict.pk``) for per-type calculation accuracy.
        faithful: use the official executor's behaviour.

    Returns:
        Accuracies in [0, 1] and counts: ``calculation_acc``, ``calculation_no_result``, ``proving_acc``,
        ``n_calculation``, ``n_proving``, plus ``calculation_<type>`` and ``proving_<type>`` accuracies.

    Raises:
        ValueError: the two sequences differ in length, or a row is of neither kind.

    Reference:
        ``geo_evaluation`` in UniGeo's ``geo.py`` (calculation: executed beams; proving: top-k exact match).
    """
    if len(predictions) != len(dataset_rows):
        raise ValueError(
            f"predictions ({len(predictions)}) and dataset_rows ({len(dataset_rows)}) differ in length"
        )
    hits: dict[str, list[float]] = {}
    for beams, row in zip(predictions, dataset_rows):
        if "manual_program" in row or "choice_nums" in row:
            choice = answer_from_beams(beams, row["numbers"], row["choice_nums"], faithful=faithful)
            ok = float(choice is not None and choice == row["label"])
            hits.setdefault("calculation_acc", []).append(ok)
            hits.setdefault("calculation_no_result", []).append(float(choice is None))
            if calculation_types is not None and row.get("id") in calculation_types:
                hits.setdefault(f"calculation_{calculation_types[row['id']]}", []).append(ok)
        elif "proving_sequence" in row:
            target = list(row["proving_sequence"])
            ok = float(any(str(b).split() == target for b in beams))
            hits.setdefault("proving_acc", []).append(ok)
            kind = (
                "triangle" if row.get("problem_type") == "proportions" else row.get("problem_type", "unknown")
            )
            hits.setdefault(f"proving_{kind}", []).append(ok)
        else:
            raise ValueError("a row is neither a UniGeo calculation nor a proving row")
    out: dict[str, float | int] = {k: sum(v) / len(v) for k, v in hits.items()}
    out["n_calculation"] = len(hits.get("calculation_acc", []))
    out["n_proving"] = len(hits.get("proving_acc", []))
    return out
