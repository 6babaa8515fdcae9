"""The three EAN phases end to end (supernet → search → retrain from scratch), resumable.

Logs and plots land in one run folder. ``attnkit search`` is a thin wrapper around :func:`run_pipeline`.
State files are read with ``torch.load(..., weights_only=True)``: a crafted pickle placed in a run
folder is refused, never executed.

Run folder::

    config.json                  the resolved PipelineConfig
    supernet.pt                  supernet checkpoint (atomic, per epoch; resumed from)
    supernet_log.jsonl           per epoch: train loss/top-1, held-out top-1 of the full and empty scheme
    search_state.pt              EANSearch state and held-out cache (atomic, every ``checkpoint_every`` steps)
    search_log.csv               per step: loss, baseline, reward, scheme, accuracy, sparsity, bonus, ...
    search_samples.csv / .jsonl  every evaluated scheme with its accuracy and reward
    result.json                  mode / best / last scheme and the selected one
    scheme.txt                   the selected scheme, canonical string (``--scheme "$(cat scheme.txt)"``)
    search_reward.png            reward over search steps
    accuracy_vs_connected.png    held-out accuracy of every evaluated scheme vs number of connected blocks
    retrain/                     the ``attnkit.train`` run of the found scheme from scratch (optional)

Reference:
    EAN, arXiv:2011.14058, github.com/gbup-group/EAN-efficient-attention-network.

Deviations:
    See :mod:`attnkit.search`; the held-out split follows the official rule (first k images per class of
    the training set, evaluated with the test-time transform).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .._config import dataclass_from_dict
from .._io import RunLock, atomic_torch_save, atomic_write_text
from ..models import ConnectionScheme
from .ean import EANSearch, SearchConfig
from .evaluate import HoldoutEvaluator, holdout_split
from .plot import plot_search
from .supernet import load_state, train_supernet

__all__ = ["PipelineConfig", "build_search_data", "run_pipeline", "plot_search", "retrain"]


@dataclass
class PipelineConfig:
    """Settings of :func:`run_pipeline`.

    Model: ``model``, ``attn``, ``attn_kwargs`` (one dict or one per stage), ``sharing`` (``"stage"``, EAN;
    ``"block"`` is LTH4SA's per-block variant), ``model_kwargs``.
    Data: ``dataset`` (an :func:`attnkit.data.build` name), ``data_dir``, ``train_subset`` (stratified
    subset of the training set before the hold-out split), ``holdout_per_class`` (first k per class),
    ``batch_size``, ``eval_batch_size``.
    Supernet: ``supernet_epochs``, ``supernet_lr``, ``momentum``, ``weight_decay``, ``supernet_schedule``
    (``constant``, official, or ``cosine``), ``supernet_p``, ``max_batches`` (per epoch, smoke runs).
    Search: ``search`` (a :class:`SearchConfig`), ``checkpoint_every`` (steps), ``extra_schemes`` (scheme
    strings or official names also scored on the frozen supernet, e.g. ``["full", "none"]``),
    ``bn_calibration_batches`` (0 = official: score with the supernet's BN statistics; N > 0 re-estimates
    BN statistics per scheme on N training batches, see :class:`HoldoutEvaluator`).
    Retrain: ``retrain_epochs`` (0 skips), ``retrain_lr``, ``retrain_scheduler``, ``retrain_milestones``,
    ``test_subset``, ``retrain_overrides`` (extra :class:`attnkit.train.TrainConfig` fields).
    Misc: ``seed``, ``out`` (run folder), ``device``, ``progress``.
    """

    model: str = "resnet20"
    attn: str = "se"
    attn_kwargs: Any | None = None
    sharing: str = "stage"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    holdout_per_class: int = 500
    batch_size: int = 128
    eval_batch_size: int = 500
    supernet_epochs: int = 55
    supernet_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    supernet_schedule: str = "constant"
    supernet_p: float = 0.5
    max_batches: int | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    checkpoint_every: int = 10
    extra_schemes: list[str] = field(default_factory=list)
    bn_calibration_batches: int = 0
    retrain_epochs: int = 0
    retrain_lr: float = 0.1
    retrain_scheduler: str = "cosine"
    retrain_milestones: list[int] = field(default_factory=list)
    retrain_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    out: str = "runs/search"
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        """The one validation of the pipeline's settings, before any work (one line naming the field).

        Raises:
            ValueError: a learning rate not a finite number > 0, ``momentum`` outside [0, 1),
                ``weight_decay`` < 0, ``supernet_p`` outside [0, 1], a count out of range, an unknown
                ``supernet_schedule``/``retrain_scheduler``, or bad attention settings
                (:func:`attnkit.train.config.check_attn_kwargs`), or a ``retrain_overrides`` key that is
                not a :class:`attnkit.train.TrainConfig` field.
        """
        from ..train.config import check_attn_kwargs

        def num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        rules = [
            ("supernet_lr", lambda v: num(v) and v > 0, "a finite number > 0"),
            ("retrain_lr", lambda v: num(v) and v > 0, "a finite number > 0"),
            ("momentum", lambda v: num(v) and 0 <= v < 1, "in [0, 1)"),
            ("weight_decay", lambda v: num(v) and v >= 0, "a finite number >= 0"),
            ("supernet_p", lambda v: num(v) and 0 <= v <= 1, "a probability in [0, 1]"),
            ("supernet_schedule", lambda v: v in ("constant", "cosine"), "'constant' or 'cosine'"),
            ("retrain_scheduler", lambda v: v in ("step", "cosine", "constant"), "step, cosine or constant"),
        ]
        rules += [
            (k, lambda v: v >= 1, ">= 1") for k in ("batch_size", "eval_batch_size", "holdout_per_class")
        ]
        rules += [(k, lambda v: v >= 0, ">= 0") for k in ("supernet_epochs", "retrain_epochs")]
        rules += [
            ("bn_calibration_batches", lambda v: v >= 0, ">= 0"),
            ("checkpoint_every", lambda v: v >= 1, ">= 1"),
        ]
        rules += [
            (k, lambda v: v is None or v >= 1, ">= 1 (or none)")
            for k in ("train_subset", "test_subset", "max_batches")
        ]
        for name, ok, rule in rules:
            if not ok(getattr(self, name)):
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        for ak in self.attn_kwargs if isinstance(self.attn_kwargs, list) else [self.attn_kwargs or {}]:
            check_attn_kwargs(self.attn, ak or {}, None, None)
        from ..train import TrainConfig

        unknown = sorted(set(self.retrain_overrides) - {f.name for f in fields(TrainConfig)})
        if unknown:
            raise ValueError(f"retrain_overrides has fields TrainConfig does not know: {unknown}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (``search`` nested)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineConfig:
        """Inverse of :meth:`to_dict`, through :func:`attnkit._config.dataclass_from_dict`.

        Args:
            d: field name -> value; ``search`` may be a dict of :class:`SearchConfig` fields.

        Returns:
            The config.

        Raises:
            ValueError: unknown keys (the message lists the valid ones).
            TypeError: a value of the wrong type (the message names the field).
        """
        d = dict(d)
        if isinstance(d.get("search"), dict):
            d["search"] = SearchConfig.from_dict(d["search"])
        return dataclass_from_dict(cls, d)


def build_search_data(cfg: PipelineConfig):
    """Build the supernet training split and the held-out split from ``attnkit.data.build``.

    Returns:
        ``(bundle, train_ds, holdout_ds)``: the :class:`attnkit.data.DataBundle`, the training images
        minus the held-out ones (training augmentation), and the held-out images (test-time transform).

    Raises:
        ValueError: a class with ``<= holdout_per_class`` images.
    """
    from ..data import TensorAugment, TensorImageDataset, build

    bundle = build(
        cfg.dataset,
        data_dir=cfg.data_dir,
        train_subset=cfg.train_subset,
        seed=cfg.seed,
        **({"test_subset": cfg.test_subset} if cfg.test_subset else {}),
    )
    tr = bundle.train
    train_idx, hold_idx = holdout_split(tr.targets, cfg.holdout_per_class)
    ti, hi = torch.tensor(train_idx), torch.tensor(hold_idx)
    train_ds = TensorImageDataset(tr.images[ti], tr.labels[ti], transform=tr.transform)
    hold_ds = TensorImageDataset(
        tr.images[hi], tr.labels[hi], transform=TensorAugment(bundle.mean, bundle.std, augment=False)
    )
    return bundle, train_ds, hold_ds


def retrain(cfg: PipelineConfig, scheme: ConnectionScheme | str, run_dir: str | os.PathLike) -> Any:
    """Train ``cfg.model`` with ``scheme`` from scratch through ``attnkit.train.fit`` (EAN step 3).

    The supernet weights are discarded. Data: the whole training set (``train_subset`` as for the
    search), evaluated on the test split. Returns whatever ``attnkit.train.fit`` returns.
    """
    from ..train import TrainConfig, fit

    kw = dict(
        model=cfg.model,
        attn=cfg.attn,
        attn_kwargs=cfg.attn_kwargs or {},
        sharing=cfg.sharing,
        scheme=str(scheme),
        model_kwargs=dict(cfg.model_kwargs),
        dataset=cfg.dataset,
        data_dir=cfg.data_dir or "data",
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        epochs=cfg.retrain_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.retrain_lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        scheduler=cfg.retrain_scheduler,
        milestones=list(cfg.retrain_milestones),
        seed=cfg.seed,
        out_dir=str(Path(run_dir).parent),
        run_name=Path(run_dir).name,
        resume="auto",
        workers=0,
        accelerator="cpu" if cfg.device == "cpu" else "auto",
        progress="lines" if cfg.progress else "none",
    )
    kw.update(cfg.retrain_overrides)  # an override wins over the value derived from the search settings
    return fit(TrainConfig(**kw))


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) supernet training, the search and (``retrain_epochs > 0``) the retraining.

    Everything is written into ``cfg.out``; an existing run folder is resumed from its state files.

    Args:
        cfg: the settings.

    Returns:
        A summary dict: the selected scheme and its mode/best/last alternatives, timings per phase,
        supernet held-out accuracies, and the retrain result if any.

    Raises:
        ValueError: bad settings (unknown model/attention/dataset, a scheme that does not fit, a config
            that differs from the one saved in an existing run folder in a model/data field), or a
            state file in the run folder that ``torch.load(..., weights_only=True)`` refuses.
        RunLockedError: another live process is writing the run folder (an ``OSError``).
        FloatingPointError: the supernet training diverged (the message names the epoch and step).
    """
    with RunLock(cfg.out, "attnkit search"):
        return _run_locked(cfg)


def _run_locked(cfg: PipelineConfig) -> dict[str, Any]:
    """The body of :func:`run_pipeline`, with the run folder held."""
    from torch.utils.data import DataLoader

    from ..models import create_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        keys = (
            "model",
            "attn",
            "attn_kwargs",
            "sharing",
            "model_kwargs",
            "dataset",
            "train_subset",
            "holdout_per_class",
            "seed",
        )
        diff = [k for k in keys if old.get(k) != json.loads(json.dumps(cfg.to_dict()))[k]]
        if diff:
            raise ValueError(f"run folder {out} holds a search with different {diff}; use another --out")
    atomic_write_text(cfg_path, json.dumps(cfg.to_dict(), indent=2) + "\n")
    log = print if cfg.progress else (lambda *a, **k: None)
    summary: dict[str, Any] = {"out": str(out)}

    torch.manual_seed(cfg.seed)
    bundle, train_ds, hold_ds = build_search_data(cfg)
    from ..data import TensorImageDataset, TrainSampler

    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=TrainSampler(len(train_ds), seed=cfg.seed),
        drop_last=True,
    )
    hold_loader = DataLoader(hold_ds, batch_size=cfg.eval_batch_size, shuffle=False)
    log(
        f"[search] {bundle.name}: supernet train {len(train_ds)} images, held-out {len(hold_ds)} "
        f"({cfg.holdout_per_class}/class), {bundle.num_classes} classes, in_chans {bundle.in_chans}"
    )
    model = create_model(
        cfg.model,
        num_classes=bundle.num_classes,
        in_chans=bundle.in_chans,
        attn=cfg.attn,
        attn_kwargs=cfg.attn_kwargs,
        sharing=cfg.sharing,
        **cfg.model_kwargs,
    )
    bps = model.blocks_per_stage

    # ---- phase 1: supernet
    t0 = time.time()
    train_supernet(
        model,
        train_loader,
        epochs=cfg.supernet_epochs,
        lr=cfg.supernet_lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        lr_schedule=cfg.supernet_schedule,
        p=cfg.supernet_p,
        seed=cfg.seed,
        run_dir=out,
        holdout_loader=hold_loader,
        device=cfg.device,
        max_batches=cfg.max_batches,
        progress=cfg.progress,
    )
    summary["supernet_seconds"] = round(time.time() - t0, 1)

    # ---- phase 2: search on the frozen supernet
    t0 = time.time()
    calib = None
    if cfg.bn_calibration_batches > 0:
        calib_ds = TensorImageDataset(train_ds.images, train_ds.labels, transform=hold_ds.transform)
        calib = DataLoader(
            calib_ds, batch_size=cfg.batch_size, sampler=TrainSampler(len(calib_ds), seed=cfg.seed + 1)
        )
    evaluator = HoldoutEvaluator(
        model,
        hold_loader,
        device=cfg.device,
        cache=True,
        bn_calibration=calib,
        bn_calibration_batches=max(cfg.bn_calibration_batches, 1),
    )
    for name in ("full", "empty"):
        summary[f"supernet_holdout_top1_{name}"] = evaluator(name)
    search = EANSearch(evaluator, bps, cfg.search)
    state_path = out / "search_state.pt"
    if state_path.exists():
        st = load_state(state_path, "search state")
        held = st.pop("holdout_evaluator", None)  # absent in run folders written before it was kept
        search.load_state_dict(st)
        if held is not None:
            evaluator.load_state_dict(held)
        log(f"[search] resumed controller at step {search.t}/{cfg.search.steps}")

    def save_state() -> None:
        atomic_torch_save({**search.state_dict(), "holdout_evaluator": evaluator.state_dict()}, state_path)

    def callback(s: EANSearch, rec) -> None:
        if (rec.step + 1) % max(cfg.checkpoint_every, 1) == 0 or s.t == cfg.search.steps:
            save_state()
            s.result().save(out)
        if cfg.progress and (rec.step % 10 == 0 or s.t == cfg.search.steps):
            log(
                f"[search] step {rec.step + 1}/{cfg.search.steps} scheme {rec.scheme} acc {rec.accuracy:.2f} "
                f"reward {rec.reward:.3f} baseline {rec.baseline:.3f} bonus {rec.rnd_bonus:.3f} "
                f"p(action) {rec.mean_action_prob:.3f} distinct evals {evaluator.num_evaluations}"
            )

    result = search.run(callback=callback)
    save_state()
    result.save(out)
    atomic_write_text(out / "scheme.txt", str(result.scheme) + "\n")
    summary["search_seconds"] = round(time.time() - t0, 1)
    summary.update(result.summary())
    summary["holdout_top1_selected"] = evaluator(result.scheme)
    summary["distinct_evaluations"] = evaluator.num_evaluations
    summary["extra_schemes"] = {}
    marks = {}
    for name in cfg.extra_schemes:
        s = ConnectionScheme.coerce(name, bps)
        summary["extra_schemes"][name] = {"scheme": str(s), "holdout_top1": evaluator(s)}
        marks[f"{name} ({s})"] = (s.num_connected, summary["extra_schemes"][name]["holdout_top1"])
    plot_search(
        result, out, title=f"EAN search: {cfg.model} + shared {cfg.attn} on {bundle.name}", extra=marks
    )
    log(
        f"[search] selected ({cfg.search.select}) scheme={result.scheme} "
        f"({result.scheme.num_connected}/{result.scheme.num_blocks} connected); mode {result.mode_scheme}, "
        f"best {result.best_scheme}"
    )

    # ---- phase 3: retrain from scratch
    if cfg.retrain_epochs > 0:
        t0 = time.time()
        summary["retrain"] = _jsonable(retrain(cfg, result.scheme, out / "retrain"))
        summary["retrain_seconds"] = round(time.time() - t0, 1)
    atomic_write_text(out / "summary.json", json.dumps(_jsonable(summary), indent=2) + "\n")
    return summary


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x)
        return x
    except TypeError:
        if isinstance(x, dict):
            return {str(k): _jsonable(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [_jsonable(v) for v in x]
        if hasattr(x, "__dict__"):
            return _jsonable({k: v for k, v in vars(x).items() if not k.startswith("_")})
        return str(x)
