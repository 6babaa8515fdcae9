"""A small step-based DDPM trainer: ScaleLong backbones, EMA, atomic checkpoints, resume, metrics.csv.

One run folder ``<out_dir>/<run_name>/`` holds ``config.json``, ``metrics.csv`` (one row per logging
interval), ``checkpoints/last.pt`` (loads with ``torch.load(weights_only=True)``), ``summary.json`` and
``samples.png`` (EMA samples at the end). It reuses attnkit's training pieces: the metrics writer, the RNG
state helpers, atomic saves and the progress-bar policy.

Reference:
    ScaleLong, arXiv 2310.13545, https://github.com/sail-sg/ScaleLong (the official recipe: AdamW lr 2e-4,
    wd 0.03, betas (0.99, 0.999), warm-up, EMA, ε-prediction).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._config import dataclass_from_dict
from .._io import RunLock, atomic_torch_save, atomic_write_text, clean_orphaned_temps, safe_torch_load
from ..train.build import check_finite_loss
from ..train.checkpoint import rng_state, set_rng_state
from ..train.loop import use_bar
from ..train.report import MetricsWriter, write_json
from .data import diffusion_images
from .ddpm import DDPMSchedule
from .diagnostics import StabilityMonitor
from .recipe import build_backbone, build_optimizer, feature_module, make_ema, save_image_grid

__all__ = ["DiffusionConfig", "train_diffusion", "load_diffusion_checkpoint", "sample_checkpoint"]

logger = logging.getLogger("attnkit.diffusion")
_COLUMNS = ["grad_norm", "param_norm", "feature_norm"]
_PAD = {"fashion-mnist": 32, "fashion_mnist": 32, "fmnist": 32}


@dataclass
class DiffusionConfig:
    """Settings of one DDPM run (every field has a CPU-sized default).

    Attributes:
        data: ``"digits"`` (1×8×8) or ``"fashion-mnist"`` (padded to 1×32×32), via :mod:`attnkit.data`.
        data_dir: where to look first for the files.
        train_subset: a seeded, class-stratified subset of the training images (None: all).
        backbone: ``"uvit-tiny"``, ``"uvit-tiny16"``, ``"unet-tiny"`` or ``"unet-small"``.
        patch_size: U-ViT patch (None: 2 for 8×8, 4 otherwise).
        lsc: the ScaleLong variant (``none``, ``sqrt2``, ``cs``, ``ls``, ``ls_nonshared``).
        kappa: κ for ``cs``.
        steps: optimizer steps.
        batch_size: images per step.
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        ema: EMA decay (with diffusers' warm-up, see :func:`attnkit.diffusion.make_ema`).
        seed: seeds the init and the one generator stream of batches, timesteps and noise.
        log_every: steps per ``metrics.csv`` row (and per feature-norm probe).
        ckpt_every: steps per checkpoint (a multiple of ``log_every``; the last step is always saved).
        num_samples: EMA samples in the final ``samples.png``.
        sample_steps: DDIM steps of those samples.
        out_dir: parent of the run folder.
        run_name: the run folder's name (None: ``<data>-<backbone>-<lsc>[-k<kappa>]-s<seed>``).
        resume: a checkpoint path, ``"auto"`` (the run folder's last checkpoint if any) or None.
        progress: ``auto`` (a bar on a TTY), ``bar`` or ``log``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    data: str = "digits"
    data_dir: str | None = None
    train_subset: int | None = None
    backbone: str = "uvit-tiny"
    patch_size: int | None = None
    lsc: str = "none"
    kappa: float = 0.5
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.03
    warmup_steps: int = 100
    ema: float = 0.999
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    num_samples: int = 64
    sample_steps: int = 50
    out_dir: str = "runs"
    run_name: str | None = None
    resume: str | None = None
    progress: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size", "log_every", "ckpt_every", "num_samples", "sample_steps"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.ckpt_every % self.log_every:
            raise ValueError(
                f"ckpt_every ({self.ckpt_every}) must be a multiple of log_every ({self.log_every})"
            )

    def resolved_run_name(self) -> str:
        """The run folder's name."""
        k = f"-k{self.kappa:g}" if self.lsc == "cs" else ""
        return self.run_name or f"{self.data}-{self.backbone}-{self.lsc}{k}-s{self.seed}"


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _build(config: DiffusionConfig, img_size: int, in_chans: int, device: torch.device):
    torch.manual_seed(config.seed)
    model = build_backbone(
        config.backbone,
        img_size=img_size,
        in_chans=in_chans,
        lsc_scaling=config.lsc,
        kappa=config.kappa,
        patch_size=config.patch_size,
    ).to(device)
    return model, make_ema(model, config.ema)


def _resume_path(config: DiffusionConfig, run_dir: Path) -> Path | None:
    if config.resume is None:
        return None
    if config.resume == "auto":
        p = run_dir / "checkpoints" / "last.pt"
        return p if p.is_file() else None
    p = Path(config.resume)
    if not p.is_file():
        raise FileNotFoundError(f"resume checkpoint {p} does not exist")
    return p


def load_diffusion_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        attnkit._io.CheckpointError: a truncated or corrupt file, or one holding objects other than tensors
            and plain containers (nothing in it is executed).
        ValueError: the file is not a diffusion-trainer checkpoint.
    """
    p = Path(path)
    ck = safe_torch_load(p, what="diffusion checkpoint")
    if not isinstance(ck, dict) or ck.get("kind") != "attnkit.diffusion":
        raise ValueError(f"{p} is not an attnkit diffusion checkpoint")
    return ck


def _save(run_dir: Path, step: int, config, model, ema, opt, sched, gen, monitor, data_shape) -> Path:
    from .. import __version__

    state = {
        "kind": "attnkit.diffusion",
        "step": int(step),
        "config": dataclasses.asdict(config),
        "data_shape": list(data_shape),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "rng": rng_state(),
        "monitor": monitor.state_dict(),
        "attnkit_version": str(__version__),
        "torch_version": str(torch.__version__),
    }
    return atomic_torch_save(state, run_dir / "checkpoints" / "last.pt")


def _bar(config: DiffusionConfig, start: int):
    if not use_bar(config.progress):
        return None
    import tqdm

    return tqdm.tqdm(total=config.steps, initial=start, desc="diffusion", dynamic_ncols=True)


def train_diffusion(config: DiffusionConfig | dict[str, Any]) -> dict[str, Any]:
    """Train a DDPM ε-predictor with ScaleLong and EMA; returns the run summary.

    Args:
        config: a :class:`DiffusionConfig` or a dict of its fields.

    Returns:
        The summary (also ``summary.json``): the :class:`StabilityMonitor` measures, the run folder, the
        wall time and the sample grid's path.

    Raises:
        ValueError: bad settings, or a resume checkpoint of another run configuration.
        FileNotFoundError: a missing resume checkpoint or data files.
        FileExistsError: the run folder already holds ``checkpoints/last.pt`` and ``resume`` is not set.
        attnkit._io.RunLockedError: another live process is writing the run folder (an ``OSError``).
        FloatingPointError: a non-finite loss; ``checkpoints/last.pt`` keeps the last finite state.
    """
    if isinstance(config, dict):
        config = dataclass_from_dict(DiffusionConfig, config)
    run_dir = Path(config.out_dir) / config.resolved_run_name()
    with RunLock(run_dir, "attnkit diffusion train"):  # one writer; removes temporary files of killed runs
        clean_orphaned_temps(run_dir / "checkpoints")
        return _train(config, run_dir)


def _train(config: DiffusionConfig, run_dir: Path) -> dict[str, Any]:
    """The body of :func:`train_diffusion`, inside the run-folder lock."""
    device = _device(config.device)
    x, _ = diffusion_images(
        config.data,
        "train",
        subset=config.train_subset,
        pad_to=_PAD.get(config.data),
        data_dir=config.data_dir,
    )
    x = x.to(device)
    model, ema = _build(config, x.shape[-1], x.shape[1], device)
    opt, sched = build_optimizer(model, config.lr, config.weight_decay, warmup_steps=config.warmup_steps)
    schedule = DDPMSchedule(clip_sample=True)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    pg = torch.Generator(device=device).manual_seed(10_000 + config.seed)
    px = x[torch.randint(0, len(x), (min(32, len(x)),), generator=pg, device=device)]
    monitor = StabilityMonitor(
        model, feature_module(model), (px, *schedule.draw(px, pg)), every=config.log_every
    )
    start, ckpt = 0, _resume_path(config, run_dir)
    if ckpt is None and (run_dir / "checkpoints" / "last.pt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run (checkpoints/last.pt); pass --resume auto to continue it or "
            "choose another --run-name / --out-dir"
        )
    if ckpt is not None:
        ck = load_diffusion_checkpoint(ckpt)
        fields = ("data", "train_subset", "backbone", "patch_size", "lsc", "kappa", "seed")
        bad = {
            k: (ck["config"].get(k), getattr(config, k))
            for k in fields
            if ck["config"].get(k) != getattr(config, k)
        }
        if bad:
            raise ValueError(f"checkpoint {ckpt} is of another run: {bad}")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        set_rng_state(ck["rng"])
        monitor.load_state_dict(ck["monitor"])
        start = int(ck["step"])
        logger.info("resumed from %s at step %d", ckpt, start)
    else:
        atomic_write_text(run_dir / "config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    writer = MetricsWriter(
        run_dir / "metrics.csv",
        _COLUMNS,
        resume_epoch=start // config.log_every - 1 if ckpt is not None else None,
    )
    bar, t_run, t_int, losses = _bar(config, start), time.time(), time.time(), []
    for step in range(start, config.steps):
        model.train()
        x0 = x[torch.randint(0, len(x), (config.batch_size,), generator=gen, device=device)]
        loss = schedule.loss(model, x0, generator=gen)
        check_finite_loss(loss, f"step {step}", run_dir / "checkpoints" / "last.pt")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = monitor.record(loss.detach(), step=step)
        opt.step()
        sched.step()
        ema.update_parameters(model)
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            dt = time.time() - t_int
            row = dict(
                epoch=step // config.log_every,
                global_step=step + 1,
                lr=opt.param_groups[0]["lr"],
                train_loss=sum(losses) / len(losses),
                epoch_time_s=dt,
                train_samples_per_s=len(losses) * config.batch_size / max(dt, 1e-9),
                grad_norm=gn,
                param_norm=monitor.param_norm[-1],
                feature_norm=monitor.feature_norm[-1][1] if monitor.feature_norm else None,
            )
            writer.write(row)
            if bar is None:
                logger.info("step %d/%d loss %.4f grad %.3f", step + 1, config.steps, row["train_loss"], gn)
            losses, t_int = [], time.time()
            if (step + 1) % config.ckpt_every == 0 or step + 1 == config.steps:
                _save(run_dir, step + 1, config, model, ema, opt, sched, gen, monitor, x.shape[1:])
    if bar is not None:
        bar.close()
    grid = sample_checkpoint(
        run_dir / "checkpoints" / "last.pt",
        run_dir / "samples.png",
        config.num_samples,
        config.sample_steps,
        seed=config.seed,
    )
    summary = dict(monitor.summary(), run_dir=str(run_dir), wall_s=time.time() - t_run, samples=str(grid))
    write_json(run_dir / "summary.json", summary)
    return summary


def sample_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    num_samples: int = 64,
    num_inference_steps: int = 50,
    seed: int = 0,
    use_ema: bool = True,
    device: str = "auto",
) -> Path:
    """Draw DDIM samples from a trainer checkpoint and write them as a PNG grid.

    Args:
        checkpoint: ``checkpoints/last.pt`` of a run.
        out: the PNG file.
        num_samples: images in the grid (8 per row).
        num_inference_steps: DDIM steps.
        seed: seeds x_T.
        use_ema: sample with the EMA weights (else the raw weights).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        The PNG path.
    """
    ck = load_diffusion_checkpoint(checkpoint)
    config = dataclass_from_dict(DiffusionConfig, ck["config"])
    dev = _device(device)
    c, h, _ = ck["data_shape"]
    model, ema = _build(config, h, c, dev)
    if use_ema:
        ema.load_state_dict(ck["ema"])
        model = ema.module
    else:
        model.load_state_dict(ck["model"])
    model.eval()
    g = torch.Generator(device=dev).manual_seed(seed)
    s = DDPMSchedule(clip_sample=True).sample(
        model, (num_samples, c, h, h), num_inference_steps, generator=g, device=dev
    )
    return save_image_grid(s, out, nrow=8)
