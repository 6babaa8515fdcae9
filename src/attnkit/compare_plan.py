"""Planning a comparison: its variants, their configs checked before any work, and which runs can be reused.

:func:`expand_variants` crosses attention modules × sharing × scheme (plain backbone first, once);
:func:`validate_plan` builds every variant's model on the meta device and the shared optimizer, schedule
and engine settings before anything is written; :func:`run_differences`, :func:`request_dict` and
:func:`find_resumable` decide which finished or interrupted runs and comparison folders match a request.
:func:`attnkit.compare.run_compare` runs the plan.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Variant",
    "expand_variants",
    "run_name",
    "plan_configs",
    "validate_plan",
    "run_differences",
    "describe_differences",
    "request_dict",
    "find_resumable",
    "REQUEST_FILE",
    "RESULT_NEUTRAL_FIELDS",
]

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
