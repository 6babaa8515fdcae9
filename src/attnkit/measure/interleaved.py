"""Side-by-side latency: models timed interleaved in one process, reported as ratios to a reference.

This is attnkit's one latency definition for comparisons (``attnkit compare``, ``attnkit profile``,
the benchmarks):

1. Every model is prepared and warmed up as in :func:`~attnkit.measure.measure_latency`. Then
   ``rounds`` rounds each time every model once, in order (A B C, A B C, ...), for
   ``min_run_time / rounds`` seconds; a round's value is the median of its per-call times.
2. **Ratio**: per round, a model's round median divided by the reference's round median *of the same
   round*; the reported ratio is the median of these per-round ratios, with their spread: the IQR
   (inclusive quartiles) for 4 or more rounds, the min–max range for fewer.
3. **Milliseconds**: the reference's value is the median over rounds of its round medians; every
   other model's value is its ratio × that, so the ms column is computed from the same rounds and
   can never point the other way from the ratio column.
4. The machine's 1-minute load average (before and after), the CPU count and the thread count are
   recorded beside the result.
5. A warning (``RuntimeWarning``, also kept in :attr:`CompareReport.warnings`) is raised when a
   model's ratio spread is wider than ``rank_spread`` (default 0.05, i.e. 5 % of its ratio). The
   smallest latency differences attnkit's tables report between attention modules are a few
   percent (ECA and IE on ResNet-50: ratios 1.018 and 1.023 in ``benchmarks/results/attention_cost-*``),
   so with a wider spread rows closer than that cannot be ranked; re-run on a quieter machine, with
   more rounds or a longer ``min_run_time``.

Shared hardware drifts (other processes, clock scaling); a ratio taken within one round cancels most
of that drift, which is why ratios, not absolute times from separate runs, are the headline figures.
"""

from __future__ import annotations

import os
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .results import load_average, md_row, result_filename, write_results
from .timing import LatencyReport, Timer, autorange_timer, check_timing_args, make_report, prepare, warm

__all__ = [
    "compare_latency",
    "CompareReport",
    "RatioSummary",
    "summarize_rounds",
    "median_spread",
    "RANK_SPREAD",
]

RANK_SPREAD = 0.05
"""Default ratio spread (as a fraction of the ratio) above which :func:`compare_latency` warns."""


@dataclass(frozen=True)
class RatioSummary:
    """One model's latency relative to the reference, from interleaved rounds.

    Attributes:
        ratio: median over rounds of the per-round ratio to the reference.
        low, high: the spread of the per-round ratios (IQR bounds for >= 4 rounds, else min and max).
        ms: ``ratio ×`` the reference's median round median, in ms.
        round_ratios: the per-round ratios.
    """

    ratio: float
    low: float
    high: float
    ms: float
    round_ratios: tuple[float, ...]

    @property
    def relative_spread(self) -> float:
        """``(high - low) / ratio``: the spread as a fraction of the ratio."""
        return (self.high - self.low) / self.ratio if self.ratio else float("inf")


def median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    """The median of per-round values and their spread: IQR bounds for >= 4 rounds, else min and max.

    The one summary of interleaved rounds (:func:`summarize_rounds`, and the equal-error ratios of
    :func:`attnkit.ode._bench.equal_error_ratio`).

    Args:
        values: one value per round (at least one).

    Returns:
        ``(median, low, high)``; ``low``/``high`` are the inclusive first and third quartiles with four or
        more values, otherwise the minimum and maximum.

    Raises:
        statistics.StatisticsError: no values.
    """
    med = statistics.median(values)
    if len(values) >= 4:
        q = statistics.quantiles(values, n=4, method="inclusive")
        return med, q[0], q[2]
    return med, min(values), max(values)


def summarize_rounds(
    round_medians_s: Mapping[str, Sequence[float]], reference: str
) -> dict[str, RatioSummary]:
    """Ratios, spreads and consistent milliseconds from per-round medians (the pure part of the definition).

    Args:
        round_medians_s: ``{model: [median seconds per call in round 0, round 1, ...]}``; every model
            has the same number of rounds, measured interleaved.
        reference: the key of the reference model.

    Returns:
        ``{model: RatioSummary}``; the reference's ratio is exactly 1.0.

    Raises:
        ValueError: an unknown reference, no rounds, unequal round counts, or a non-positive time.
    """
    if reference not in round_medians_s:
        raise ValueError(f"reference {reference!r} is not among the models {list(round_medians_s)}")
    ref = [float(t) for t in round_medians_s[reference]]
    if not ref:
        raise ValueError("summarize_rounds needs at least one round")
    out: dict[str, RatioSummary] = {}
    ref_ms = statistics.median(ref) * 1e3
    for name, meds in round_medians_s.items():
        meds = [float(t) for t in meds]
        if len(meds) != len(ref):
            raise ValueError(f"model {name!r} has {len(meds)} rounds, the reference {len(ref)}")
        if any(t <= 0 for t in meds + ref):
            raise ValueError(f"round medians must be positive seconds, got {meds} for {name!r}")
        rr = tuple(1.0 for _ in meds) if name == reference else tuple(a / b for a, b in zip(meds, ref))
        ratio, low, high = median_spread(rr)
        out[name] = RatioSummary(ratio, low, high, ratio * ref_ms, rr)
    return out


@dataclass
class CompareReport:
    """Side-by-side timings from :func:`compare_latency`.

    Attributes:
        baseline: the reference model's name (its ratio is 1.0).
        reports: one :class:`~attnkit.measure.LatencyReport` per model; ``median_ms`` and
            ``samples_per_s`` follow the comparison's definition (ratio × the reference's ms), the
            other statistics pool all the model's measurements.
        summaries: per model, its :class:`RatioSummary`.
        round_medians_ms: per model, the median of each round, ms.
        rounds: number of interleaved rounds.
        load_avg_start, load_avg_end: 1-minute load average before and after timing (None if unknown).
        cpu_count: logical CPUs of the machine.
        num_threads: intra-op threads used.
        rank_spread: the warning threshold used.
        warnings: the warnings raised (spread too wide to rank).
    """

    baseline: str
    reports: dict[str, LatencyReport]
    summaries: dict[str, RatioSummary]
    round_medians_ms: dict[str, list[float]]
    rounds: int
    load_avg_start: float | None = None
    load_avg_end: float | None = None
    cpu_count: int | None = None
    num_threads: int = 1
    rank_spread: float = RANK_SPREAD
    warnings: list[str] = field(default_factory=list)

    @property
    def ratios(self) -> dict[str, float]:
        """Per model, the median per-round ratio to the baseline."""
        return {k: s.ratio for k, s in self.summaries.items()}

    @property
    def spread_kind(self) -> str:
        """``"IQR"`` for 4 or more rounds, else ``"min–max"``."""
        return "IQR" if self.rounds >= 4 else "min–max"

    def __getitem__(self, name: str) -> dict[str, Any]:
        """``report[name]``: that model's row (``ratio``, spread, ``median_ms``, ... as in :meth:`rows`).

        Raises:
            KeyError: unknown model name.
        """
        if name not in self.reports:
            raise KeyError(f"no model named {name!r} in this comparison; models: {', '.join(self.reports)}")
        s = self.summaries[name]
        return {
            "name": name,
            "ratio": s.ratio,
            "ratio_low": s.low,
            "ratio_high": s.high,
            "ratio_spread": self.spread_kind,
            "rounds": self.rounds,
            "flops": 2 * self.reports[name].macs,
            **self.reports[name].to_dict(),
            "load_avg_start": self.load_avg_start,
            "load_avg_end": self.load_avg_end,
        }

    def __len__(self) -> int:
        return len(self.reports)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per model: ``name``, ``ratio``, its spread, then every report field.

        Returns:
            The rows, in the models' order.
        """
        return [self[k] for k in self.reports]

    def footer(self) -> str:
        """The conditions line printed under every comparison table (threads, load, definition).

        Returns:
            The text.
        """
        r = next(iter(self.reports.values()))

        def load(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        text = (
            f"Batch {r.batch}, input {r.height}×{r.width}, {r.precision}, {r.memory_format}, compile={r.compile}, "
            f"{r.device_type} ({r.device_name}), {self.num_threads} thread{'' if self.num_threads == 1 else 's'}, load average "
            f"{load(self.load_avg_start)} → {load(self.load_avg_end)} on {self.cpu_count} CPUs, torch "
            f"{r.torch_version}; {self.rounds} interleaved rounds. Ratio = median over rounds of the per-round "
            f"ratio to {self.baseline} (spread: {self.spread_kind} of those ratios); ms = ratio × "
            f"{self.baseline}'s median round time, so both columns agree."
        )
        return "\n\n".join([text, *(f"**Warning:** {w}" for w in self.warnings)])

    def to_markdown(self) -> str:
        """A table with params, MACs, FLOPs, ms, IQR, samples/s, the ratio and its spread.

        Returns:
            The markdown text, with the conditions and any warning below the table.
        """
        cols = [
            "Model",
            "Params (M)",
            "MACs (M)",
            "FLOPs (M)",
            "Median (ms)",
            "IQR (ms)",
            "Samples/s",
            f"Latency ratio to {self.baseline}",
            f"Ratio {self.spread_kind}",
        ]
        lines = [md_row(cols), md_row(["---"] * len(cols))]
        for k, r in self.reports.items():
            s = self.summaries[k]
            cells = [k, f"{r.params / 1e6:.3f}", f"{r.macs / 1e6:.2f}", f"{2 * r.macs / 1e6:.2f}"]
            cells += [f"{r.median_ms:.3f}", f"{r.iqr_ms:.3f}", f"{r.samples_per_s:.1f}"]
            cells += [f"{s.ratio:.3f}", f"{s.low:.3f}–{s.high:.3f}"]
            lines.append(md_row(cells))
        return "\n".join(lines) + "\n\n" + self.footer()

    def write(self, out_dir: str | os.PathLike, *, kind: str = "infer") -> dict[str, Path]:
        """Write the CSV, JSON and markdown files named by :func:`~attnkit.measure.result_filename`.

        Args:
            out_dir: the folder (created if missing).
            kind: ``"infer"`` or ``"train"``.

        Returns:
            ``{"csv": path, "json": path, "md": path}``.
        """
        r = next(iter(self.reports.values()))
        stem = result_filename(
            kind=kind,
            precision=r.precision,
            channels_last=r.memory_format == "nhwc",
            compile=r.compile,
            device=r.device_type,
        )[: -len(".csv")]
        return write_results(out_dir, stem, self.rows(), table=self.to_markdown())


def _spread_warnings(
    summaries: Mapping[str, RatioSummary], baseline: str, rank_spread: float, kind: str
) -> list[str]:
    wide = {k: s for k, s in summaries.items() if k != baseline and s.relative_spread > rank_spread}
    if not wide:
        return []
    detail = ", ".join(f"{k} {s.ratio:.3f} ({s.low:.3f}–{s.high:.3f})" for k, s in wide.items())
    return [
        f"latency ratios too noisy to rank: the per-round {kind} of {detail} is wider than "
        f"{rank_spread:.0%} of the ratio, more than the few-percent differences between attention modules; "
        "re-run on a quieter machine, with more rounds or a longer run time"
    ]


def compare_latency(
    models: Mapping[str, nn.Module],
    input_size: Sequence[int] = (1, 3, 224, 224),
    *,
    rounds: int = 5,
    device: torch.device | str | None = None,
    precision: str = "32-true",
    channels_last: bool = False,
    compile: str | None = None,
    warmup: int = 10,
    min_run_time: float = 1.0,
    num_threads: int | None = None,
    rank_spread: float = RANK_SPREAD,
    timer: Timer = autorange_timer,
) -> CompareReport:
    """Time several models side by side, interleaved, and report ratios to the first (see the module doc).

    Args:
        models: ``{name: model}``; the first entry is the reference. To compare a deployed form, pass
            ``attnkit.reparameterize_model(model)`` as one of the entries.
        input_size: full input shape, batch first.
        rounds: interleaved rounds (>= 1; 4 or more give an IQR spread).
        device: where to time (default: each model's device).
        precision: a key of :data:`~attnkit.measure.PRECISIONS`.
        channels_last: NHWC memory format for the models and the input.
        compile: None (eager), a ``torch.compile`` mode or a backend name.
        warmup: warm-up calls per model (>= 1) before the rounds.
        num_threads: intra-op threads (default ``torch.get_num_threads()``); recorded.
        min_run_time: seconds of timed calls per model over all rounds.
        rank_spread: warn when a model's ratio spread exceeds this fraction of its ratio.
        timer: the clock (see :data:`~attnkit.measure.timing.Timer`); replace it only to test.

    Returns:
        A :class:`CompareReport`.

    Raises:
        TypeError: a value of ``models`` is not an ``nn.Module``.
        ValueError: no models, ``rounds < 1``, ``rank_spread <= 0``, or as
            :func:`~attnkit.measure.measure_latency`.
    """
    if not models:
        raise ValueError("compare_latency needs at least one model")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if not rank_spread > 0:
        raise ValueError(f"rank_spread must be a positive fraction, got {rank_spread!r}")
    n_threads = check_timing_args(warmup, min_run_time, num_threads)
    opts = dict(device=device, precision=precision, channels_last=channels_last, compile=compile)
    prepared = {k: prepare(m, input_size, **opts) for k, m in models.items()}
    names = list(prepared)
    load_start = load_average()
    first = {k: warm(p, warmup, n_threads) for k, p in prepared.items()}
    times: dict[str, list[float]] = {k: [] for k in names}
    medians: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rounds):
        for k in names:
            ts = list(timer(prepared[k].fn, min_run_time / rounds, n_threads))
            times[k].extend(ts)
            medians[k].append(statistics.median(ts))
    base = names[0]
    summaries = summarize_rounds(medians, base)
    reports = {
        k: make_report(prepared[k], times[k], first[k], n_threads, median_s=summaries[k].ms / 1e3)
        for k in names
    }
    msgs = _spread_warnings(summaries, base, rank_spread, "IQR" if rounds >= 4 else "min–max range")
    for m in msgs:
        warnings.warn(m, RuntimeWarning, stacklevel=2)
    return CompareReport(
        baseline=base,
        reports=reports,
        summaries=summaries,
        round_medians_ms={k: [t * 1e3 for t in v] for k, v in medians.items()},
        rounds=rounds,
        load_avg_start=load_start,
        load_avg_end=load_average(),
        cpu_count=os.cpu_count(),
        num_threads=n_threads,
        rank_spread=rank_spread,
        warnings=msgs,
    )
