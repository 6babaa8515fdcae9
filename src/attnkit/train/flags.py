"""Help text and choices of the ``attnkit train`` flags, one entry per :class:`~attnkit.train.TrainConfig` field.

:func:`attnkit.train.add_config_arguments` reads :data:`HELP` for every flag's text and :func:`choices` for
the fields with a closed set of values (argparse then lists them in ``--help`` and rejects others with
one line). A test checks that every field has an entry.
"""

from __future__ import annotations

from .features import COMMON_OPTIMIZERS, LOGGERS, MIXUP_MODES, TIMM_SCHEDULERS

__all__ = ["HELP", "choices"]

HELP: dict[str, str] = {
    # model
    "model": "backbone name (attnkit list-models), e.g. resnet20, resnet164, resnet50",
    "num_classes": "classifier outputs; none: the dataset's class count",
    "attn": "channel attention module (attnkit list-attn), e.g. se, eca, cbam, dia, spem; none: plain",
    "attn_kwargs": "attention keyword arguments, KEY=VALUE (e.g. rd_ratio=0.25)",
    "sharing": "where attention connects: block, or stage (one module shared per stage); none: the module's default",
    "scheme": "sparse connection mask such as 110|0011|110010|011 (one digit per block, | between stages)",
    "model_kwargs": "backbone family options, KEY=VALUE",
    # data
    "dataset": "dataset name (digits, fashion-mnist, cifar10, cifar100, stl10, image-folder)",
    "data_dir": "folder of the dataset files",
    "download": "allow torchvision to download the dataset (never implicit)",
    "val_split": "training images held out for model selection; 0: select on the test set (the papers)",
    "train_subset": "seeded class-stratified subset of the training images; none: all",
    "test_subset": "seeded class-stratified subset of the test images; none: all",
    "augment": "training augmentation of the dataset (random crop, flip where sensible)",
    "workers": "DataLoader worker processes",
    "drop_last": "drop the last, shorter training batch",
    "threads": "intra-op threads per training process; none: free cores minus workers",
    # optimisation
    "epochs": "training epochs",
    "batch_size": "GLOBAL training batch, split over processes",
    "eval_batch_size": "global evaluation batch",
    "lr": "base learning rate (never scaled implicitly)",
    "momentum": "SGD momentum (also timm's momentum optimizers with --opt)",
    "nesterov": "Nesterov momentum for attnkit's SGD (timm's --opt sgd is always Nesterov)",
    "weight_decay": "weight decay of the decayed parameter group",
    "wd_mode": "which parameters decay: all (the papers), no_norm_bias, module_hints (+ no_weight_decay())",
    "scheduler": "attnkit lr schedule when --sched is not given: step (MultiStepLR per epoch), cosine (per update), constant",
    "milestones": "epochs where step decays multiply the lr by --gamma (also timm's multistep/step)",
    "gamma": "lr decay factor at each milestone (timm's decay_rate with --sched)",
    "warmup_epochs": "linear lr warm-up epochs (timm's warmup_epochs with --sched)",
    "label_smoothing": "cross-entropy label smoothing (folded into mixup's soft targets)",
    "grad_clip": "max global gradient norm; none: no clipping",
    "optim_strategy": "training rule wrapped around the optimizer: mirror (Mirror Gradient), altersgd; none: off",
    "mg_alpha1": "Mirror Gradient alpha1 (descent scale)",
    "mg_alpha2": "Mirror Gradient alpha2 (ascent scale)",
    "mg_beta": "Mirror Gradient beta: interval between mirror steps (official: 3)",
    "mg_mode": "Mirror Gradient sub-step: optimizer (official code) or sgd (Algorithm 1 as written)",
    "alter_start": "AlterSGD: fraction of the run's steps before the alternating phase starts",
    "alter_mode": "AlterSGD phase-B steps: sgd (raw updates) or optimizer",
    # engine
    "seed": "seed of weights, data order and augmentation",
    "deterministic": "torch.use_deterministic_algorithms (warn only)",
    "precision": "Fabric precision; 16-* need CUDA (use bf16-mixed on CPU)",
    "accelerator": "device: auto (CUDA if visible, else CPU), cpu, cuda/gpu, mps",
    "devices": "processes (devices) per node",
    "strategy": "Fabric strategy: auto, ddp, ddp_spawn, ... (torchrun detected)",
    "num_nodes": "nodes",
    "sync_bn": "SyncBatchNorm over processes (CUDA only)",
    "find_unused_parameters": "DDP's find_unused_parameters (EAN-style supernets)",
    "channels_last": "channels_last memory format for model and batches",
    "compile": "torch.compile mode; none: eager",
    # output
    "out_dir": "folder of run folders",
    "run_name": "run folder name; none: <dataset>-<model>[-<attn>]-s<seed>",
    "resume": "auto (continue <run_dir>/last.ckpt when it exists) or a checkpoint path; none: fresh",
    "init": "a pruned.pt from attnkit prune to fine-tune",
    "log_interval": "a log line, and a step-level logger row, every this many steps",
    "progress": "progress display: auto (bar on a TTY), bar, lines, none",
    "tensorboard": "TensorBoard logs in <run_dir>/tb (same as --logger tensorboard)",
    "eval_every": "evaluate every this many epochs (and after the last)",
    "eval_reparam": "evaluate the re-parameterised (fused) model",
    # timm / Fabric trainer features
    "opt": (
        "timm optimizer (timm.optim.create_optimizer_v2), e.g. "
        + ", ".join(COMMON_OPTIMIZERS)
        + "; any name of timm.optim.list_optimizers(); none: attnkit's SGD"
    ),
    "opt_kwargs": "extra keywords of the timm optimizer, KEY=VALUE (e.g. betas=(0.9,0.95) eps=1e-8)",
    "sched": "timm lr schedule (timm.scheduler.create_scheduler_v2), replaces --scheduler; none: --scheduler",
    "sched_on_updates": "step the timm schedule per optimizer update instead of per epoch",
    "min_lr": "lower lr bound of the timm schedule",
    "warmup_lr": "lr at the start of the timm warm-up",
    "sched_kwargs": "extra keywords of create_scheduler_v2, KEY=VALUE (e.g. cooldown_epochs=0 cycle_limit=1)",
    "model_ema": "keep timm's ModelEmaV3 of the weights, evaluated beside them (ema_* columns)",
    "model_ema_decay": "EMA decay per optimizer update, in (0, 1)",
    "model_ema_warmup": "timm's EMA warm-up (decay grows as 1 - (1 + step)^(-2/3))",
    "mixup": "mixup alpha (timm Mixup); 0: off",
    "cutmix": "cutmix alpha (timm Mixup); 0: off",
    "mixup_prob": "probability of mixing a batch, in [0, 1]",
    "mixup_switch_prob": "probability of cutmix instead of mixup when both are on, in [0, 1]",
    "mixup_mode": "mix per batch, per pair of images or per image",
    "grad_accum": "batches per optimizer update (gradient accumulation; loss scaled, DDP sync skipped)",
    "logger": "Fabric loggers, comma separated: " + ",".join(LOGGERS) + " (wandb offline); none: off",
    "recipe": "the preset this config started from (informational)",
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "wd_mode": ("all", "no_norm_bias", "module_hints"),
    "scheduler": ("step", "cosine", "constant"),
    "progress": ("auto", "bar", "lines", "none"),
    "accelerator": ("auto", "cpu", "cuda", "gpu", "mps"),
    "optim_strategy": ("mirror", "mg", "altersgd"),
    "mg_mode": ("optimizer", "sgd"),
    "alter_mode": ("sgd", "optimizer"),
    "compile": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "sched": TIMM_SCHEDULERS,
    "mixup_mode": MIXUP_MODES,
}


def choices(name: str, optional: bool) -> tuple[str, ...] | None:
    """The closed set of values of field ``name`` for argparse (``none`` added for optional fields), or None."""
    if name == "precision":
        from ..measure.precision import PRECISIONS

        vals: tuple[str, ...] | None = tuple(PRECISIONS)
    else:
        vals = _CHOICES.get(name)
    if vals is None:
        return None
    return vals + ("none",) if optional and "none" not in vals else vals
