"""What an EAN search records and returns: one row per step, one per evaluated scheme, and the result.

:class:`SearchResult` writes the search logs (``search_log.csv``, ``search_samples.csv``,
``search_samples.jsonl``) and ``result.json``, each atomically.

Reference:
    EAN, "Efficient Attention Network: Accelerate Attention by Searching Where to Plug",
    arXiv:2011.14058, official code github.com/gbup-group/EAN-efficient-attention-network.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .._io import atomic_write_csv, atomic_write_jsonl, atomic_write_text
from ..models import ConnectionScheme

__all__ = ["StepRecord", "SampleRecord", "SearchResult"]


@dataclass
class StepRecord:
    """One search step, as logged (one row of ``search_log.csv``).

    ``reward``/``scheme``/``accuracy``/``sparsity`` describe sample 1 of the step; ``rewards`` holds all K
    raw rewards (no bonus); ``mean_action_prob`` is the mean probability of the sampled actions (→ 1 as
    the policy becomes deterministic); ``connect_probs`` is P(a_b = 1) after the step.
    """

    step: int
    loss: float
    replay_loss: float | None
    baseline: float
    reward: float
    scheme: str
    accuracy: float
    sparsity: float
    rnd_bonus: float
    mean_action_prob: float
    rewards: list[float]
    connect_probs: list[float]


@dataclass
class SampleRecord:
    """One evaluated scheme (one row of ``search_samples.csv``). ``cached`` = reward came from the cache."""

    step: int
    index: int
    scheme: str
    num_connected: int
    accuracy: float
    sparsity: float
    reward: float
    cached: bool


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        scheme: the selected scheme (per ``SearchConfig.select``).
        mode_scheme: per-block argmax of the final policy.
        best_scheme / best_reward: the highest raw reward seen (no bonus) and its scheme.
        last_scheme: sample 1 of the last step.
        history: one :class:`StepRecord` per step; samples: every evaluated scheme.
        select: which rule chose ``scheme``.
    """

    scheme: ConnectionScheme
    mode_scheme: ConnectionScheme
    best_scheme: ConnectionScheme | None
    best_reward: float
    last_scheme: ConnectionScheme | None
    history: list[StepRecord]
    samples: list[SampleRecord]
    select: str = "mode"

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (schemes as canonical strings)."""
        s = lambda x: None if x is None else str(x)  # noqa: E731
        return {
            "scheme": s(self.scheme),
            "select": self.select,
            "mode_scheme": s(self.mode_scheme),
            "best_scheme": s(self.best_scheme),
            "best_reward": self.best_reward,
            "last_scheme": s(self.last_scheme),
            "steps": len(self.history),
            "evaluations": len(self.samples),
            "distinct_schemes": len({r.scheme for r in self.samples}),
            "num_connected": self.scheme.num_connected,
            "num_blocks": self.scheme.num_blocks,
            "sparsity": self.scheme.sparsity,
        }

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write the search logs and the result into ``run_dir``, each file atomically.

        The files are ``search_log.csv``, ``search_samples.csv``, ``search_samples.jsonl`` and
        ``result.json``.

        Args:
            run_dir: the folder (created if missing).
        """
        d = Path(run_dir)
        d.mkdir(parents=True, exist_ok=True)
        step_cols = [
            "step",
            "loss",
            "replay_loss",
            "baseline",
            "reward",
            "scheme",
            "accuracy",
            "sparsity",
            "rnd_bonus",
            "mean_action_prob",
        ]
        atomic_write_csv(
            d / "search_log.csv", step_cols, [{k: getattr(r, k) for k in step_cols} for r in self.history]
        )
        samp_cols = [f.name for f in fields(SampleRecord)]
        atomic_write_csv(d / "search_samples.csv", samp_cols, [asdict(r) for r in self.samples])
        atomic_write_jsonl(d / "search_samples.jsonl", (asdict(r) for r in self.samples))
        atomic_write_text(d / "result.json", json.dumps(self.summary(), indent=2) + "\n")
