"""``TrainConfig``: every setting of a training run, its presets (recipes) and its CLI flags.

Precedence, lowest first: dataclass defaults < ``--recipe NAME`` (a YAML preset
shipped in ``attnkit/recipes/``) < ``-c/--config FILE.yaml`` < explicit CLI flags. The resolved config is
saved as ``config.yaml`` in the run folder, and ``attnkit train -c runs/x/config.yaml`` reproduces it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .._config import dataclass_from_dict, unwrap_optional
from .._io import atomic_write_text, check_run_name

__all__ = [
    "TrainConfig",
    "MODEL_FIELDS",
    "list_recipes",
    "load_recipe",
    "config_from_dict",
    "load_config",
    "save_config",
    "add_config_arguments",
    "resolve_config",
    "config_diff",
]

#: Fields whose change makes a checkpoint incompatible (resume raises ``ValueError``).
MODEL_FIELDS = ("model", "attn", "attn_kwargs", "sharing", "scheme", "num_classes", "model_kwargs", "init")


@dataclass
class TrainConfig:
    """All settings of one training run. Defaults equal the ``cifar-group`` preset where one applies.

    Model: ``model`` (a :func:`attnkit.list_models` name), ``num_classes`` (None: from the dataset),
    ``attn``, ``attn_kwargs``, ``sharing`` (None: the module's default, ``block`` for gates), ``scheme`` (see :func:`attnkit.create_model`) and
    ``model_kwargs`` (family options such as ``shortcut``).

    Data: ``dataset`` (:func:`attnkit.data.list_datasets`), ``data_dir``, ``download`` (allow torchvision to
    download; never implicit), ``val_split`` (held-out training images; 0 = the papers' protocol, selection
    on the test set), ``train_subset`` / ``test_subset`` (seeded stratified subsets for quick runs),
    ``augment``, ``workers``, ``drop_last``, ``threads`` (intra-op threads of each training process; None:
    the available cores minus ``workers``, never more than already set; recorded in ``env.json``).

    Optimisation: ``epochs``, ``batch_size`` (**global**, split over processes), ``eval_batch_size``
    (global), SGD ``lr``/``momentum``/``nesterov``/``weight_decay``, ``wd_mode`` (``all`` |
    ``no_norm_bias`` | ``module_hints``), ``scheduler`` (``step``: MultiStepLR stepped after each epoch;
    ``cosine``: per iteration to 0; ``constant``), ``milestones``, ``gamma``, ``warmup_epochs`` (linear,
    per iteration), ``label_smoothing``, ``grad_clip`` (max global grad norm, None = off), ``optim_strategy``
    (``mirror`` | ``altersgd`` | None: an :mod:`attnkit.optim` wrapper around the SGD optimizer; Mirror
    Gradient's ``mg_alpha1``/``mg_alpha2``/``mg_beta``/``mg_mode``, AlterSGD's ``alter_start``/``alter_mode``;
    the wrapper's counters are saved in checkpoints).

    Engine: ``seed``, ``deterministic`` (``torch.use_deterministic_algorithms``), ``precision``
    (``32-true`` | ``bf16-mixed`` | ``16-mixed`` | ``bf16-true`` | ``16-true`` | ``64-true``),
    ``accelerator``, ``devices``, ``strategy``, ``num_nodes``, ``sync_bn``, ``find_unused_parameters``,
    ``channels_last``, ``compile`` (a ``torch.compile`` mode or None).

    timm/Fabric features (see :mod:`attnkit.train.features`; all off by default): ``opt`` (a timm optimizer
    name for ``timm.optim.create_optimizer_v2``, with ``opt_kwargs``; None: the SGD above), ``sched`` (a
    timm schedule for ``timm.scheduler.create_scheduler_v2``, replacing ``scheduler``; ``sched_on_updates``,
    ``min_lr``, ``warmup_lr``, ``sched_kwargs``), ``model_ema`` (timm's ``ModelEmaV3``; ``model_ema_decay``,
    ``model_ema_warmup``), ``mixup`` / ``cutmix`` alphas (timm's ``Mixup``; ``mixup_prob``,
    ``mixup_switch_prob``, ``mixup_mode``), ``grad_accum`` (batches per optimizer update) and ``logger``
    (``csv,tensorboard,wandb``: Fabric loggers, step- and epoch-level).

    Initialisation: ``init`` (a ``pruned.pt`` written by ``attnkit prune``: the run fine-tunes that
    pruned network; resuming rebuilds it before loading ``last.ckpt``).
    Output: ``out_dir``, ``run_name`` (default ``<dataset>-<model>[-<attn>]-s<seed>``), ``resume``
    (``auto`` | a checkpoint path | None), ``log_interval`` (steps), ``progress`` (``auto`` | ``bar`` |
    ``lines`` | ``none``), ``tensorboard``, ``eval_every`` (epochs), ``eval_reparam`` (evaluate
    ``attnkit.reparam.reparameterize_model(model)`` instead of the raw model), ``recipe`` (the preset name
    this config started from, informational).
    """

    model: str = "resnet164"
    num_classes: int | None = None
    attn: str | None = None
    attn_kwargs: dict[str, Any] = field(default_factory=dict)
    sharing: str | None = None
    scheme: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "cifar100"
    data_dir: str = "data"
    download: bool = False
    val_split: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    augment: bool = True
    epochs: int = 164
    batch_size: int = 128
    eval_batch_size: int = 100
    drop_last: bool = False
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    wd_mode: str = "all"
    scheduler: str = "step"
    milestones: list[int] = field(default_factory=lambda: [81, 122])
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    optim_strategy: str | None = None
    mg_alpha1: float = 1.0
    mg_alpha2: float = 0.1
    mg_beta: int = 3
    mg_mode: str = "optimizer"
    alter_start: float = 0.7
    alter_mode: str = "sgd"
    seed: int = 0
    deterministic: bool = False
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    sync_bn: bool = False
    find_unused_parameters: bool = False
    channels_last: bool = False
    compile: str | None = None
    workers: int = 2
    threads: int | None = None
    out_dir: str = "runs"
    run_name: str | None = None
    resume: str | None = None
    init: str | None = None
    log_interval: int = 50
    progress: str = "auto"
    tensorboard: bool = False
    eval_every: int = 1
    eval_reparam: bool = False
    opt: str | None = None
    opt_kwargs: dict[str, Any] = field(default_factory=dict)
    sched: str | None = None
    sched_on_updates: bool = False
    min_lr: float = 0.0
    warmup_lr: float = 1e-5
    sched_kwargs: dict[str, Any] = field(default_factory=dict)
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    grad_accum: int = 1
    logger: str | None = None
    recipe: str | None = None

    def __post_init__(self) -> None:
        choices = {
            "wd_mode": ("all", "no_norm_bias", "module_hints"),
            "scheduler": ("step", "cosine", "constant"),
            "progress": ("auto", "bar", "lines", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "devices",
            "num_nodes",
            "eval_every",
            "log_interval",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "val_split", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for the default), got {self.threads}")
        check_hyperparameters(self)
        check_trainer_features(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict of every field (what checkpoints and ``config.yaml`` store)."""
        return dataclasses.asdict(self)

    @property
    def resolved_run_name(self) -> str:
        """``run_name`` or the default ``<dataset>-<model>[-<attn>]-s<seed>``."""
        if self.run_name:
            return self.run_name
        return "-".join([self.dataset, self.model] + ([self.attn] if self.attn else []) + [f"s{self.seed}"])

    @property
    def run_dir(self) -> Path:
        """``out_dir / resolved_run_name``."""
        return Path(self.out_dir) / self.resolved_run_name


def _finite(
    name: str, v: Any, lo: float, hi: float = math.inf, *, lo_open: bool = True, hi_open: bool = False
) -> None:
    """Raise ``ValueError`` unless ``v`` is a finite real number in the interval (lo, hi] (bounds as flagged)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'>' if lo_open else '>='} {lo:g}"
        if math.isfinite(hi):
            rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a finite number {rng}, got {v!r}")


#: attention keyword arguments that must be positive numbers (timm's ``rd_*`` family and kernel sizes).
POSITIVE_ATTN_KWARGS = ("rd_ratio", "rd_channels", "rd_divisor", "reduction", "k_size", "kernel_size")


def check_attn_kwargs(
    attn: str | None, attn_kwargs: dict[str, Any], scheme: str | None, sharing: str | None
) -> None:
    """Reject attention settings that would be silently misread.

    ``attn`` must be a registered attention module; numeric ``rd_*`` values (and kernel sizes) must be
    positive numbers; a ``scheme``/``sharing`` needs an attention module.

    Raises:
        ValueError: the message names the field and the value.
    """
    if isinstance(attn, str) and attn.lower() not in ("", "none"):
        from ..attention import get_attn

        get_attn(attn)  # an unknown name fails here, before any data is read
    for k in POSITIVE_ATTN_KWARGS:
        if k in (attn_kwargs or {}) and attn_kwargs[k] is not None:
            _finite(f"attn_kwargs {k}", attn_kwargs[k], 0.0)
    if (scheme or sharing) and (attn is None or str(attn).lower() in ("", "none")):
        which = "scheme" if scheme else "sharing"
        raise ValueError(f"{which}={scheme or sharing!r} needs an attention module: pass --attn NAME as well")


def check_hyperparameters(c: TrainConfig) -> None:
    """The numeric checks of :class:`TrainConfig` (called by ``__post_init__``, before any work).

    ``lr`` > 0, ``momentum`` in [0, 1), ``weight_decay`` >= 0, ``gamma`` > 0, ``label_smoothing`` in
    [0, 1), ``grad_clip`` > 0 (or None), ``train_subset``/``test_subset``/``num_classes`` >= 1 (or None),
    milestones >= 0; all finite (NaN and inf are refused); then :func:`check_attn_kwargs`, and
    ``run_name`` must stay inside ``out_dir`` (:func:`attnkit._io.check_run_name`).

    Raises:
        ValueError: one line naming the field, its valid range and the value given.
    """
    _finite("lr", c.lr, 0.0)
    _finite("momentum", c.momentum, 0.0, 1.0, lo_open=False, hi_open=True)
    _finite("weight_decay", c.weight_decay, 0.0, lo_open=False)
    _finite("gamma", c.gamma, 0.0)
    _finite("label_smoothing", c.label_smoothing, 0.0, 1.0, lo_open=False, hi_open=True)
    if c.grad_clip is not None:
        _finite("grad_clip (max gradient norm; none = off)", c.grad_clip, 0.0)
    for name in ("train_subset", "test_subset", "num_classes"):
        v = getattr(c, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1 (or none for all), got {v}")
    if any(m < 0 for m in c.milestones):
        raise ValueError(f"milestones must be >= 0, got {c.milestones}")
    check_attn_kwargs(c.attn, c.attn_kwargs, c.scheme, c.sharing)
    check_run_name(c.run_name)


def check_trainer_features(c: TrainConfig) -> None:
    """Checks of the timm/Fabric trainer features (``opt``, ``sched``, EMA, mixup, accumulation, loggers).

    Raises:
        ValueError: a value outside its range or choices (the message names the field), or a combination
            that cannot work: ``grad_accum > 1`` with Mirror Gradient (its closure re-runs the batch),
            mixup/cutmix with an odd per-process batch (timm's ``Mixup`` pairs each image with its
            mirror in the batch).
    """
    from .features import check_features  # the feature checks live beside the features

    check_features(c)


def config_from_dict(d: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A ``TrainConfig`` equal to ``base`` (default: the dataclass defaults) updated with ``d``.

    Raises:
        ValueError: unknown keys (the message lists the valid keys) or invalid choices.
        TypeError: a value of the wrong type (the message names the field).
    """
    return dataclass_from_dict(TrainConfig, d, base=base)


def list_recipes() -> list[str]:
    """Names of the presets shipped in ``attnkit/recipes/``."""
    root = resources.files("attnkit") / "recipes"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The raw dict of a shipped preset.

    Raises:
        ValueError: unknown preset (the message lists the shipped ones).
    """
    path = resources.files("attnkit") / "recipes" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; shipped recipes: {', '.join(list_recipes())}")
    d = yaml.safe_load(path.read_text()) or {}
    d.setdefault("recipe", name)
    return d


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    d = yaml.safe_load(p.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"config file {p} must hold a mapping of field: value")
    return d


def load_config(path: str | Path) -> TrainConfig:
    """Load a YAML config (e.g. a run's ``config.yaml``), applying its ``recipe`` first if it names one."""
    d = _read_yaml(path)
    base = config_from_dict(load_recipe(d["recipe"])) if d.get("recipe") else None
    return config_from_dict(d, base)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write every field of ``config`` as YAML (atomic)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def parse_kv(s: str) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` flag value; the value through ``ast.literal_eval`` (a plain string if that fails).

    Raises:
        argparse.ArgumentTypeError: no ``=`` in ``s``.
    """
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected key=value, got {s!r}")
    k, v = s.split("=", 1)
    try:
        return k, ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return k, v


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe``, ``-c/--config`` and one flag per ``TrainConfig`` field.

    ``field_name`` becomes ``--field-name``; booleans ``--x/--no-x``; lists take ``nargs``; dict fields take
    ``key=value`` pairs parsed with ``ast.literal_eval``; optional fields accept ``none``. Defaults are
    suppressed, so only explicitly given flags override the recipe and YAML layers. Help texts and the
    closed sets of choices come from :mod:`attnkit.train.flags`.
    """
    from .flags import HELP as FLAG_HELP
    from .flags import choices as flag_choices

    parser.add_argument("--recipe", default=argparse.SUPPRESS, help=f"preset: {', '.join(list_recipes())}")
    parser.add_argument("-c", "--config", default=argparse.SUPPRESS, help="YAML file of config fields")
    defaults = TrainConfig().to_dict()
    for name, tp in typing.get_type_hints(TrainConfig).items():
        if name == "recipe":
            continue
        flag = "--" + name.replace("_", "-")
        inner, optional = unwrap_optional(tp)
        kw: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": f"{FLAG_HELP.get(name, '')} (default {defaults[name]!r})".lstrip(),
        }
        allowed = flag_choices(name, optional)
        if allowed is not None and inner is str:
            kw["choices"] = allowed
        origin = typing.get_origin(inner)
        if inner is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif origin is list:
            (et,) = typing.get_args(inner)
            parser.add_argument(flag, nargs="*", type=et, **kw)
        elif origin is dict:
            parser.add_argument(flag, nargs="*", type=parse_kv, metavar="KEY=VALUE", **kw)
        else:
            parser.add_argument(flag, type=str if optional else inner, **kw)


def resolve_config(args: argparse.Namespace | dict[str, Any]) -> TrainConfig:
    """Resolve parsed CLI arguments into a ``TrainConfig``: defaults < recipe < ``-c`` YAML < flags.

    The recipe is the ``--recipe`` flag, else the ``recipe`` named in the YAML file.

    Raises:
        ValueError, TypeError: as :func:`config_from_dict`.
    """
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    recipe = given.pop("recipe", None)
    cfg_path = given.pop("config", None)
    ydict = _read_yaml(cfg_path) if cfg_path else {}
    recipe = recipe or ydict.get("recipe")
    cfg = TrainConfig()
    if recipe:
        cfg = config_from_dict(load_recipe(recipe), cfg)
    if ydict:
        cfg = config_from_dict({**ydict, **({"recipe": recipe} if recipe else {})}, cfg)
    hints = typing.get_type_hints(TrainConfig)
    flags = {
        k: (dict(v) if typing.get_origin(unwrap_optional(hints[k])[0]) is dict else v)
        for k, v in given.items()
        if k in hints
    }
    return config_from_dict(flags, cfg)


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two config dicts: ``{field: (a_value, b_value)}``."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
