"""The training engine: ``TrainConfig``, ``fit(config) -> summary``, the loop pieces and checkpoints.

Quick start::

    from attnkit.train import TrainConfig, fit
    summary = fit(TrainConfig(model="resnet20", dataset="digits", epochs=5, scheduler="cosine",
                              batch_size=64, workers=0, out_dir="runs"))
    summary["best_eval_top1"], summary["final_eval_top1"]

Reusable pieces for other commands (``compare``, EAN search): :func:`train_one_epoch`, :func:`evaluate`,
:class:`Engine`, :func:`build_optimizer`, :func:`build_scheduler`, :func:`build_loaders`,
:func:`make_state` / :func:`read_checkpoint`, :class:`MetricsWriter`.

timm/Fabric features (``--opt``, ``--sched``, ``--model-ema``, ``--mixup``/``--cutmix``, ``--grad-accum``,
``--logger``): :func:`build_timm_optimizer`, :func:`build_timm_scheduler`, :func:`build_ema`,
:func:`build_mixup`, :func:`build_loggers`; user data: ``fit(config, train_loader=, val_loader=)`` and
:class:`HFImageDataset` for Hugging Face ``datasets``.
"""

from .build import build_engine, build_loaders, build_model, epoch_seed
from .checkpoint import (
    CHECKPOINT_KEYS,
    CheckpointError,
    load_model,
    make_state,
    read_checkpoint,
    resolve_resume,
    rng_state,
    set_rng_state,
)
from .config import (
    TrainConfig,
    add_config_arguments,
    config_from_dict,
    list_recipes,
    load_config,
    load_recipe,
    resolve_config,
    save_config,
)
from .ema import build_ema
from .engine import PRECISIONS, Engine
from .features import LOGGERS, TIMM_SCHEDULERS, parse_loggers
from .fit import StopTraining, fit
from .loggers import build_loggers
from .loop import evaluate, train_one_epoch
from .mixing import build_mixup
from .optim_factory import build_timm_optimizer, build_timm_scheduler, updates_per_epoch
from .report import FIXED_COLUMNS, MetricsWriter, read_metrics
from .schedule import build_optimizer, build_scheduler, param_groups, scheduler_interval
from .user_data import HFImageDataset, loaders_data

__all__ = [
    "TrainConfig",
    "add_config_arguments",
    "config_from_dict",
    "list_recipes",
    "load_config",
    "load_recipe",
    "resolve_config",
    "save_config",
    "Engine",
    "PRECISIONS",
    "fit",
    "build_engine",
    "build_loaders",
    "build_model",
    "epoch_seed",
    "StopTraining",
    "train_one_epoch",
    "evaluate",
    "FIXED_COLUMNS",
    "MetricsWriter",
    "read_metrics",
    "build_optimizer",
    "build_scheduler",
    "param_groups",
    "scheduler_interval",
    "CHECKPOINT_KEYS",
    "CheckpointError",
    "make_state",
    "read_checkpoint",
    "rng_state",
    "set_rng_state",
    "load_model",
    "resolve_resume",
    "build_ema",
    "build_mixup",
    "build_timm_optimizer",
    "build_timm_scheduler",
    "updates_per_epoch",
    "build_loggers",
    "parse_loggers",
    "LOGGERS",
    "TIMM_SCHEDULERS",
    "HFImageDataset",
    "loaders_data",
]
