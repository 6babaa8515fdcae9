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

The figure and the markdown table are written by :mod:`attnkit._compare_plot` and
:func:`format_table`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import RunLock, atomic_write_json, write_results

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
]

log = logging.getLogger("attnkit.compare")

REQUEST_FILE = "compare_request.json"
"""Written first into every comparison folder: the variants, seeds and base config that were asked for."""

RESULT_NEUTRAL_FIELDS = (
    "resume",
    "run_name",
    "out_dir",
    "progress",
    "log_interval",
    "workers",
    "threads",
    "download",
    "data_dir",
    "tensorboard",
    "recipe",
)
"""Config fields that do not change a run's result (where it lives, how it logs, how fast it loads);
they are ignored when deciding whether a finished run can be reused."""


@dataclass(frozen=True)
class Variant:
    """One entry of a comparison: an attention module and how it connects.

    Attributes:
        attn: registry name, or None for the plain backbone.
        sharing: ``"block"``/``"stage"`` or None (the module's default).
        scheme: a connection scheme string (``"110|011|..."``) or None (all blocks).
        label: the row name in the table and the run-folder name.
    """

    attn: str | None
    sharing: str | None = None
    scheme: str | None = None
    label: str = ""


def _label(attn, sharing, scheme, n_sharing, n_scheme) -> str:
    if attn is None:
        return "none"
    s = attn
    if sharing is not None and n_sharing > 1:
        s += f"-{sharing}"
    if scheme is not None and n_scheme > 1:
        s += "-" + scheme.replace("|", "_")
    elif scheme is not None:
        s += "-scheme"
    return s


def expand_variants(
    attns: Sequence[str], sharings: Sequence[str | None] = (None,), schemes: Sequence[str | None] = (None,)
) -> list[Variant]:
    """The cross product of modules × sharing × scheme, with the plain backbone listed once, first.

    ``"none"`` in ``attns`` means the plain backbone. ``"all"`` in ``schemes`` (or None) means every
    block.

    Args:
        attns: attention registry names (``"none"`` for the plain backbone).
        sharings: sharing modes to cross with every module.
        schemes: connection schemes to cross with every module.

    Returns:
        The variants, the plain backbone (the latency and parameter reference) first.

    Raises:
        ValueError: an empty list, or a duplicate variant.
    """
    if not attns:
        raise ValueError("compare needs at least one --attn value")
    sharings = list(sharings) or [None]
    schemes = [None if s in (None, "", "all") else s for s in (list(schemes) or [None])]
    out: list[Variant] = []
    seen = set()
    for a in attns:
        a = None if a in (None, "", "none", "plain") else a
        combos = [(None, None)] if a is None else [(sh, sc) for sh in sharings for sc in schemes]
        for sh, sc in combos:
            key = (a, sh, sc)
            if key in seen:
                if a is None:
                    continue
                raise ValueError(f"duplicate variant {key}")
            seen.add(key)
            out.append(Variant(a, sh, sc, _label(a, sh, sc, len(sharings), len(schemes))))
    out.sort(key=lambda v: v.attn is not None)  # plain first: the latency baseline
    return out


# ---------------------------------------------------------------------------------------------------
# the plan: one config per variant × seed, validated before any work


def run_name(variant: Variant, seed: int, seeds: Sequence[int]) -> str:
    """The run folder of one variant × seed: ``<label>`` for one seed, ``<label>-s<seed>`` for several."""
    return variant.label if len(seeds) == 1 else f"{variant.label}-s{seed}"


def plan_configs(
    base, variants: Sequence[Variant], seeds: Sequence[int], out: Path
) -> dict[tuple[str, int], Any]:
    """``{(label, seed): TrainConfig}``: ``base`` with each variant's model fields, seed and run folder.

    Raises:
        ValueError, TypeError: a field value :class:`~attnkit.train.TrainConfig` rejects.
    """
    return {
        (v.label, s): dataclasses.replace(
            base,
            attn=v.attn,
            sharing=v.sharing,
            scheme=v.scheme,
            seed=int(s),
            out_dir=str(out),
            run_name=run_name(v, s, seeds),
        )
        for s in seeds
        for v in variants
    }


def _check_names(base, variants: Sequence[Variant]) -> None:
    """Model, attention and sharing names against the registries (no model is built)."""
    from .attention import list_attn
    from .models import list_models

    models = list_models()
    if base.model not in models:
        raise ValueError(f"unknown model {base.model!r}; registered models: {', '.join(models)}")
    known = list_attn()
    bad = [v.attn for v in variants if v.attn is not None and v.attn.lower() not in known]
    if bad:
        names = ", ".join(dict.fromkeys(bad))
        raise ValueError(
            f"unknown attention module{'s' if len(set(bad)) > 1 else ''} {names}; "
            f"known modules: none, {', '.join(known)}"
        )
    for v in variants:
        if v.sharing not in (None, "block", "stage"):
            raise ValueError(f"--sharing must be block or stage, got {v.sharing!r}")


def validate_plan(base, variants: Sequence[Variant], seeds: Sequence[int]) -> dict[tuple[str, int], Any]:
    """Check every variant and hyper-parameter of a comparison before anything is trained or written.

    The shared settings were checked when ``base`` was built (:class:`~attnkit.train.TrainConfig`
    rejects non-finite or out-of-range values). Here: names first (instant), then for every variant a model is built on the meta device (its scheme,
    sharing and ``attn_kwargs`` resolved by :func:`attnkit.create_model`; 3 input channels and
    ``num_classes`` or 10 classes, since the data is not loaded yet), and the optimizer, schedule and engine
    settings are built once (:func:`attnkit.train.build_optimizer`, :func:`~attnkit.train.build_scheduler`,
    :func:`~attnkit.train.build_engine`), which rejects a negative learning rate, momentum or weight
    decay and an unknown precision or accelerator.

    Args:
        base: the :class:`~attnkit.train.TrainConfig` every variant shares.
        variants: from :func:`expand_variants`.
        seeds: the seeds every variant is trained with.

    Returns:
        The configs of :func:`plan_configs` (``out_dir`` still the base's).

    Raises:
        ValueError: the first problem, naming the variant (``"variant se-110: ..."``).
        TypeError: an ``attn_kwargs`` key the module does not take.
    """
    from .train import build_engine, build_model, build_optimizer, build_scheduler

    if not variants:
        raise ValueError("no variants to compare")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers, got {list(seeds)}")
    _check_names(base, variants)
    configs = plan_configs(base, variants, seeds, Path(base.out_dir))
    stub = type("Stub", (), {"num_classes": base.num_classes or 10, "in_chans": 3})()
    first = None
    for v in variants:
        cfg = configs[(v.label, seeds[0])]
        try:
            model = _build_quick(cfg, stub, build_model)
        except (ValueError, TypeError, KeyError) as e:
            raise type(e)(f"variant {v.label}: {e}") from None
        first = first or (cfg, model)
    cfg, model = first
    try:
        opt = build_optimizer(model, cfg)
        build_scheduler(opt, cfg, steps_per_epoch=1)
        build_engine(cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"invalid training setting: {e}") from None
    return configs


def _build_quick(cfg, data, build_model):
    """The model on the meta device (no memory, no init cost); on CPU where a module needs real tensors."""
    import torch

    try:
        with torch.device("meta"):
            return build_model(cfg, data)
    except (RuntimeError, NotImplementedError):
        return build_model(cfg, data)


# ---------------------------------------------------------------------------------------------------
# reuse: which finished or interrupted runs match the request


def _result_dict(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in RESULT_NEUTRAL_FIELDS}


def run_differences(saved: dict[str, Any], requested: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields that make a saved run's result differ from the requested one: ``{field: (saved, requested)}``.

    Fields in :data:`RESULT_NEUTRAL_FIELDS` are ignored.

    Args:
        saved: a run's config dict (``summary.json``'s ``config`` or its ``config.yaml``).
        requested: the requested config dict.

    Returns:
        The differing fields, sorted by name; empty when the run can be reused.
    """
    from .train.config import config_diff

    return config_diff(_result_dict(saved), _result_dict(requested))


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run folder was trained with (finished: ``summary.json``; started: ``config.yaml``)."""
    import yaml

    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text()).get("config")
    if (run_dir / "config.yaml").exists():
        return yaml.safe_load((run_dir / "config.yaml").read_text())
    return None


def describe_differences(diff: dict[str, tuple[Any, Any]], limit: int = 4) -> str:
    """``"epochs 5 → 6, lr 0.05 → 0.1"`` (at most ``limit`` fields, then ``"and N more"``)."""
    items = [f"{k} {a!r} → {b!r}" for k, (a, b) in diff.items()]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def request_dict(base, variants: Sequence[Variant], seeds: Sequence[int]) -> dict[str, Any]:
    """What a comparison folder was asked for: variants, seeds and the shared config (result fields)."""
    cfg = _result_dict(base.to_dict())
    for k in ("attn", "sharing", "scheme", "seed"):
        cfg.pop(k, None)
    return {"variants": [dataclasses.asdict(v) for v in variants], "seeds": list(seeds), "config": cfg}


def _request_diff(saved: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    from .train.config import config_diff

    diff = config_diff(saved.get("config", {}), want["config"])
    sv = [v["label"] for v in saved.get("variants", [])]
    wv = [v["label"] for v in want["variants"]]
    if sv != wv:
        diff["variants"] = (",".join(sv), ",".join(wv))
    if saved.get("seeds") != want["seeds"]:
        diff["seeds"] = (saved.get("seeds"), want["seeds"])
    return diff


def find_resumable(out_dir: str | os.PathLike, request: dict[str, Any]) -> Path | None:
    """The latest comparison folder under ``out_dir`` whose request equals ``request``.

    Args:
        out_dir: the parent folder of comparison folders.
        request: from :func:`request_dict`.

    Returns:
        The folder, or None when ``out_dir`` holds no comparison of this dataset and model.

    Raises:
        ValueError: comparisons of the same dataset and model exist but none matches; the message
            names the latest, how it differs, and the exact ``--name`` to pass to resume it anyway.
    """
    root = Path(out_dir)
    found: list[tuple[float, Path, dict[str, Any]]] = []
    for f in root.glob(f"*/{REQUEST_FILE}") if root.is_dir() else ():
        try:
            saved = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        found.append((f.stat().st_mtime, f.parent, saved))
    found.sort(key=lambda t: t[0], reverse=True)
    for _, folder, saved in found:
        if not _request_diff(saved, request):
            return folder
    same = [
        (folder, saved)
        for _, folder, saved in found
        if all(saved.get("config", {}).get(k) == request["config"].get(k) for k in ("dataset", "model"))
    ]
    if not same:
        return None
    folder, saved = same[0]
    raise ValueError(
        f"--resume auto: no comparison under {root} matches this request; the latest of the same data and "
        f"model, {folder}, differs in {describe_differences(_request_diff(saved, request))}. Pass "
        f"--name {folder.name} --resume auto to continue it (runs whose config differs are retrained), "
        "or omit --resume to start a new comparison"
    )


def _move_aside(run_dir: Path) -> Path:
    dest = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while dest.exists():
        dest, n = dest.with_name(f"{dest.name}-{n}"), n + 1
    run_dir.rename(dest)
    return dest


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
# rows: per-seed results aggregated per variant


def binomial_se(top1_percent: float | None, n: int | None) -> float | None:
    """Standard error of a top-1 accuracy from ``n`` test images, in percentage points.

    ``100 · sqrt(p (1 - p) / n)`` with ``p = top1 / 100``: the spread of the accuracy over test sets of
    this size drawn from the same distribution (a normal approximation to the binomial).

    Args:
        top1_percent: the accuracy, percent.
        n: test images.

    Returns:
        The standard error in points, or None when either is unknown.
    """
    if top1_percent is None or not n:
        return None
    p = min(max(top1_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def _mean_std(xs: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [float(x) for x in xs if x is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def aggregate_rows(
    variants: Sequence[Variant],
    seeds: Sequence[int],
    summaries: dict[tuple[str, int], dict[str, Any]],
    test_images: int | None,
) -> list[dict[str, Any]]:
    """One row per variant: accuracy mean ± std over seeds, the test set's binomial SE, paired Δ to the first.

    Args:
        variants: the variants; the first is the reference of the paired differences.
        seeds: the seeds every variant was trained with.
        summaries: ``{(label, seed): fit summary}`` (missing entries: not trained).
        test_images: the test-set size (for :func:`binomial_se`).

    Returns:
        Rows with ``variant``, ``attn``, ``sharing``, ``scheme``, ``seeds``, ``best_top1`` (mean),
        ``best_top1_std``, ``best_epoch`` (one seed) , ``final_top1`` (mean), ``final_top1_std``
        (None for one seed), ``final_top1_se`` (binomial SE at the mean), ``delta_final`` and
        ``delta_final_std`` (mean and std over seeds of the paired difference to the reference, points),
        ``test_images`` and ``per_seed`` (``{seed: {best_top1, best_epoch, final_top1, run_dir}}``).
        Full precision; round only when printing.
    """
    ref = variants[0].label
    rows = []
    for v in variants:
        per = {s: summaries.get((v.label, s), {}) for s in seeds}
        best, best_std = _mean_std([p.get("best_eval_top1") for p in per.values()])
        final, final_std = _mean_std([p.get("final_eval_top1") for p in per.values()])
        deltas = []
        for s, p in per.items():
            r = summaries.get((ref, s), {}).get("final_eval_top1")
            if p.get("final_eval_top1") is not None and r is not None:
                deltas.append(p["final_eval_top1"] - r)
        d, d_std = _mean_std(deltas)
        rows.append(
            {
                "variant": v.label,
                "attn": v.attn,
                "sharing": v.sharing,
                "scheme": v.scheme,
                "seeds": list(seeds),
                "best_top1": best,
                "best_top1_std": best_std,
                "best_epoch": per[seeds[0]].get("best_epoch") if len(seeds) == 1 else None,
                "final_top1": final,
                "final_top1_std": final_std,
                "final_top1_se": binomial_se(final, test_images),
                "delta_final": d,
                "delta_final_std": d_std,
                "test_images": test_images,
                "per_seed": {
                    str(s): {
                        "best_top1": p.get("best_eval_top1"),
                        "best_epoch": p.get("best_epoch"),
                        "final_top1": p.get("final_eval_top1"),
                        "run_dir": p.get("run_dir"),
                    }
                    for s, p in per.items()
                },
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------
# the table


def _f(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _pm(v: float | None, e: float | None, digits: int = 2, sign: bool = False) -> str:
    s = _f(v, digits, sign)
    return s if v is None or e is None else f"{s} ± {e:.{digits}f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of comparison rows, numbers rounded for reading (files keep full precision).

    One seed: best top-1 (its epoch), final top-1 ± the test set's binomial SE, the difference to the
    first row. Several seeds: mean ± std over seeds, and the paired difference mean ± std.

    Args:
        rows: from :func:`run_compare` (or :func:`aggregate_rows` plus params/MACs/latency fields).

    Returns:
        The markdown table.
    """
    if not rows:
        return ""
    n_seeds = len(rows[0].get("seeds") or [0])
    ref = rows[0]["variant"]
    if n_seeds > 1:
        acc = f"best top-1 % (mean ± std, {n_seeds} seeds) | final top-1 % (mean ± std) | Δfinal vs {ref} (paired)"
    else:
        acc = f"best top-1 % (epoch) | final top-1 % ± SE | Δfinal vs {ref}"
    head = f"| variant | {acc} | params | Δparams | MACs (M) | latency ms | latency ratio (spread) |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if n_seeds > 1:
            best = _pm(r.get("best_top1"), r.get("best_top1_std"))
            final = _pm(r.get("final_top1"), r.get("final_top1_std"))
        else:
            best = _f(r.get("best_top1"))
            if r.get("best_epoch") is not None and r.get("best_top1") is not None:
                best += f" ({r['best_epoch']})"
            final = _pm(r.get("final_top1"), r.get("final_top1_se"))
        delta = (
            "—"
            if r["variant"] == ref
            else _pm(r.get("delta_final"), r.get("delta_final_std") if n_seeds > 1 else None, sign=True)
        )
        ratio = _f(r.get("latency_ratio"))
        if r.get("latency_ratio_low") is not None and r["variant"] != ref:
            ratio += f" ({r['latency_ratio_low']:.2f}–{r['latency_ratio_high']:.2f})"
        lines.append(
            f"| {r['variant']} | {best} | {final} | {delta} | {r['params']:,} | {r['params_delta']:+,} | "
            f"{r['macs'] / 1e6:.2f} | {_f(r.get('latency_ms'))} | {ratio} |"
        )
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def describe_budget(base, seeds: Sequence[int]) -> str:
    """``"resnet20 on digits, 5 epochs, seed 0"`` with correct plurals and the subsets."""
    s = f"{base.model} on {base.dataset}, {_plural(base.epochs, 'epoch')}, "
    s += f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    if base.train_subset:
        s += f", {_plural(base.train_subset, 'training image')}"
    if base.test_subset:
        s += f", {_plural(base.test_subset, 'test image')}"
    return s


# ---------------------------------------------------------------------------------------------------
# the job


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
        footer, lat = "", None
        if latency:
            import torch

            from ._runtime import set_threads
            from .measure import compare_latency

            log.info("compare: timing %d variants interleaved", len(variants))
            kw = {"timer": timer} if timer is not None else {}
            previous = torch.get_num_threads()
            try:  # the training runs' thread rule (--threads, else the free cores), timing in this process
                kw["num_threads"] = set_threads(base.threads)
                with warnings.catch_warnings():  # the spread warning goes to the log once and into the footer
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lat = compare_latency(
                        models,
                        (latency_batch, data.in_chans, h, w),
                        rounds=5,
                        min_run_time=latency_min_run_time * 5,
                        **kw,
                    )
            finally:
                torch.set_num_threads(previous)
            for w in lat.warnings:
                log.warning("compare: %s", w)
            latency_columns(rows, lat)
            footer = lat.footer()
        title = describe_budget(base, seeds)
        sel = "best = best test top-1 over epochs (selected on the test set, the papers' protocol, optimistic); "
        acc = (
            f"± = the test set's binomial standard error ({_plural(len(data.test), 'test image')})"
            if len(seeds) == 1
            else f"± = std over {len(seeds)} seeds; Δ = paired difference to {variants[0].label}, same seed"
        )
        notes = (
            f"{sel}final = last epoch; {acc}. MACs per image at the dataset resolution; latency at batch "
            f"{latency_batch}, CPU, interleaved (see below)." + (f"\n\n{footer}" if footer else "")
        )
        meta = {
            "budget": title,
            "seeds": seeds,
            "test_images": len(data.test),
            "latency": None
            if lat is None
            else {
                "batch": latency_batch,
                "rounds": lat.rounds,
                "spread": lat.spread_kind,
                "load_avg_start": lat.load_avg_start,
                "load_avg_end": lat.load_avg_end,
                "num_threads": lat.num_threads,
                "cpu_count": lat.cpu_count,
                "warnings": lat.warnings,
            },
        }
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


def latency_columns(rows: list[dict[str, Any]], lat) -> None:
    """Fill ``latency_ms``, ``latency_ratio`` and its spread from a :class:`~attnkit.measure.CompareReport`.

    The ms of a row is its ratio × the reference's median round time (the comparison's own definition),
    so a row with a ratio above 1 always has more ms than the reference, and below 1 fewer.

    Args:
        rows: the comparison rows (``variant`` keys name the report's models); updated in place.
        lat: the report.
    """
    for r in rows:
        s = lat.summaries[r["variant"]]
        r["latency_ms"] = lat.reports[r["variant"]].median_ms
        r["latency_ratio"] = s.ratio
        r["latency_ratio_low"], r["latency_ratio_high"] = s.low, s.high
