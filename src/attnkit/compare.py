"""``attnkit compare``: attention variants trained alike and measured side by side.

Trains several attention variants on the same data, seed(s) and budget, and puts accuracy (best AND
final epoch, with the test set's binomial standard error, and mean ± std over paired seeds), parameters,
MACs and latency side by side.

The job in order:

1. :func:`validate_plan` builds every variant's config, model, optimizer, schedule and engine
   settings before anything is written or trained, so a typo in the last variant costs nothing.
2. Each variant × seed is an ordinary training run (:func:`attnkit.train.fit`: its own run folder
   with config, metrics and checkpoints) inside the comparison folder, so an interrupted comparison
   keeps every run it finished and ``resume="auto"`` continues the rest. A finished or interrupted run
   is reused only when its resolved config equals the requested one (:func:`run_differences`);
   otherwise it is moved aside and retrained, and the log says which fields differed.
3. Latency is measured for all variants together, interleaved, in one process after training
   (:func:`attnkit.measure.compare_latency`: per-round ratios to the first variant, the ms column
   computed from the same rounds, the spread and the load average recorded).

Planning, validation and run reuse live in :mod:`attnkit.compare_plan`; the rows and the markdown
table in :mod:`attnkit.compare_report`; the figure in :mod:`attnkit._compare_plot`. Their public names
are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._io import RunLock, atomic_write_json, write_results
from .compare_plan import (
    REQUEST_FILE,
    RESULT_NEUTRAL_FIELDS,
    Variant,
    _move_aside,
    _saved_config,
    describe_differences,
    expand_variants,
    find_resumable,
    plan_configs,
    request_dict,
    run_differences,
    run_name,
    validate_plan,
)
from .compare_report import (
    aggregate_rows,
    binomial_se,
    describe_budget,
    format_table,
    latency_columns,
    results_meta,
    results_notes,
)

__all__ = [
    "Variant",
    "expand_variants",
    "validate_plan",
    "run_compare",
    "format_table",
    "aggregate_rows",
    "binomial_se",
    "run_differences",
    "find_resumable",
    "REQUEST_FILE",
    "RESULT_NEUTRAL_FIELDS",
    "run_name",
    "plan_configs",
    "describe_differences",
    "request_dict",
    "describe_budget",
    "latency_columns",
]

log = logging.getLogger("attnkit.compare")


def _train_run(cfg, resume: bool) -> dict[str, Any]:
    """Train one variant × seed, reusing or resuming its run folder when its config matches."""
    from .train import fit

    run_dir = cfg.run_dir
    saved = _saved_config(run_dir) if resume else None
    if saved is not None:
        diff = run_differences(saved, cfg.to_dict())
        finished = (run_dir / "summary.json").exists()
        if not diff and finished:
            log.info("compare: %s finished earlier with the same config, reusing it", cfg.run_name)
            with RunLock(run_dir, "attnkit compare"):  # no live writer; takes over a killed run's stale lock
                return json.loads((run_dir / "summary.json").read_text())
        if diff:
            note = ""
            if set(diff) == {"epochs"} and finished:
                note = " (a finished schedule cannot be extended in place: the run trains from epoch 0)"
            dest = _move_aside(run_dir)
            log.info(
                "compare: %s was %s with %s; retraining it%s, the old run moved to %s",
                cfg.run_name,
                "finished" if finished else "started",
                describe_differences(diff),
                note,
                dest.name,
            )
    elif not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume auto or choose another --name")
    log.info("compare: training %s", cfg.run_name)
    return fit(dataclasses.replace(cfg, resume="auto" if resume else None))


# ---------------------------------------------------------------------------------------------------
# the job


def _time_variants(models: dict, shape: tuple[int, ...], threads, min_run_time: float, timer):
    """Time all variants interleaved in this process (:func:`attnkit.measure.compare_latency`, 5 rounds).

    Uses the training runs' thread rule (``threads``, else the free cores) and restores torch's thread
    count afterwards. The spread warning is logged once here and reported in the table's footer.
    """
    import torch

    from ._runtime import set_threads
    from .measure import compare_latency

    log.info("compare: timing %d variants interleaved", len(models))
    kw = {"timer": timer} if timer is not None else {}
    previous = torch.get_num_threads()
    try:
        kw["num_threads"] = set_threads(threads)
        with warnings.catch_warnings():  # the spread warning goes to the log once and into the footer
            warnings.simplefilter("ignore", RuntimeWarning)
            lat = compare_latency(models, shape, rounds=5, min_run_time=min_run_time * 5, **kw)
    finally:
        torch.set_num_threads(previous)
    for msg in lat.warnings:
        log.warning("compare: %s", msg)
    return lat


def run_compare(
    base,
    variants: Sequence[Variant],
    *,
    out_dir: str | os.PathLike,
    seeds: Sequence[int] | None = None,
    latency: bool = True,
    latency_batch: int = 32,
    latency_min_run_time: float = 0.5,
    train: bool = True,
    resume: bool | None = None,
    on_start: Callable[[Path], Any] | None = None,
    timer=None,
) -> list[dict[str, Any]]:
    """Validate, train every variant × seed with the same config, then time the variants side by side.

    Args:
        base: an :class:`attnkit.train.TrainConfig`; its ``attn``/``sharing``/``scheme``/``seed``/
            ``run_name``/``out_dir`` are overridden per run.
        variants: from :func:`expand_variants`; the first is the reference of the latency ratio, the
            parameter difference and the paired accuracy difference.
        out_dir: the comparison folder; runs go to ``out_dir/<label>/`` (one seed) or
            ``out_dir/<label>-s<seed>/``.
        seeds: the seeds (default ``[base.seed]``); every variant is trained with each (paired).
        latency: measure latency (interleaved, in one process) at ``latency_batch`` images.
        latency_batch: batch size of the latency measurement (images per call).
        latency_min_run_time: seconds of timing per model and round.
        train: False only profiles (accuracy columns are then empty).
        resume: reuse finished runs whose config matches and resume interrupted ones (default:
            ``base.resume == "auto"``); runs whose config differs are moved aside and retrained.
        on_start: called with the comparison folder once validation passed and the folder exists.
        timer: the latency clock (see :data:`attnkit.measure.timing.Timer`); replace it only to test.

    Returns:
        One dict per variant (see :func:`aggregate_rows`) plus ``params``, ``params_delta``, ``macs``
        (per image), ``latency_ms``, ``latency_ratio`` and its spread ``latency_ratio_low``/``_high``.
        Also written to ``compare.json``, ``compare.csv``, ``compare.md`` and ``compare.png`` in
        ``out_dir``.

    Raises:
        ValueError, TypeError: an invalid variant or setting (before anything is written).
        FileExistsError: ``out_dir`` already holds a comparison and ``resume`` is off.
        attnkit._io.RunLockedError: another live process is writing ``out_dir`` (an ``OSError``).
    """
    from ._compare_plot import plot_compare
    from .data.datasets import build_from_config
    from .measure import profile
    from .train import build_model

    seeds = [int(s) for s in (seeds if seeds is not None else [base.seed])]
    resume = (base.resume == "auto") if resume is None else bool(resume)
    out = Path(out_dir)
    configs = validate_plan(base, variants, seeds)  # names, kwargs, schemes, settings: no data yet
    configs = plan_configs(base, variants, seeds, out)
    if (out / REQUEST_FILE).exists() and not resume and train:
        raise FileExistsError(
            f"{out} already holds a comparison; pass --resume auto to continue it or choose another --name"
        )
    data = build_from_config(base)
    h, w = data.img_size
    models = {}
    for v in variants:  # the real models (data's channels and classes): built before anything is written
        try:
            models[v.label] = build_model(configs[(v.label, seeds[0])], data)
        except (ValueError, TypeError, KeyError) as e:
            raise type(e)(f"variant {v.label}: {e}") from None
    with RunLock(out, "attnkit compare"):  # one writer per comparison folder (creates it)
        atomic_write_json(out / REQUEST_FILE, request_dict(base, variants, seeds))
        if on_start is not None:
            on_start(out)
        summaries: dict[tuple[str, int], dict[str, Any]] = {}
        if train:
            for s in seeds:
                for v in variants:
                    summaries[(v.label, s)] = _train_run(configs[(v.label, s)], resume)
        rows = aggregate_rows(variants, seeds, summaries, len(data.test) if train else None)
        base_params = None
        for r in rows:
            rep = profile(models[r["variant"]], input_size=(data.in_chans, h, w))
            base_params = rep.params_total if base_params is None else base_params
            r.update(params=rep.params_total, params_delta=rep.params_total - base_params, macs=rep.macs)
            r.update(latency_ms=None, latency_ratio=None, latency_ratio_low=None, latency_ratio_high=None)
        lat = None
        if latency:
            lat = _time_variants(
                models, (latency_batch, data.in_chans, h, w), base.threads, latency_min_run_time, timer
            )
            latency_columns(rows, lat)
        title = describe_budget(base, seeds)
        notes = results_notes(
            variants, seeds, len(data.test), latency_batch, lat.footer() if lat is not None else ""
        )
        meta = results_meta(title, seeds, len(data.test), latency_batch, lat)
        write_results(
            out,
            "compare",
            rows,
            title=f"attnkit compare: {title}",
            table=format_table(rows),
            notes=notes,
            meta=meta,
        )
        plot_compare(rows, out / "compare.png", title)
    return rows
