"""The files rank 0 writes into a run folder around :func:`attnkit.train.fit`'s epochs.

At the start: ``metrics.csv`` (truncated to the resumed epoch), ``config.yaml`` and ``env.json``
(:func:`_start_files`); per epoch: the metrics row, one log line and the Fabric loggers
(:func:`_log_epoch`); at the end: the final weights, ``curves.png``, ``report.md`` and, last,
``summary.json`` with the best AND the final eval top-1 (:func:`_summary`).
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_json
from .._runtime import collect_env
from .build import save_weights
from .config import save_config
from .loop import aux_columns, logger
from .report import MetricsWriter, plot_curves, read_metrics, write_report
from .trainer_features import ema_columns, log_to_loggers, save_ema_weights

if TYPE_CHECKING:
    from .fit import _Run

__all__: list[str] = []  # internal to fit(); imported by attnkit.train.fit


def _start_files(run: _Run) -> None:
    """Rank 0: ``metrics.csv`` (truncated to the resumed epoch), ``config.yaml`` and ``env.json``."""
    if not run.engine.is_global_zero:
        return
    config, data, engine = run.config, run.data, run.engine
    extra = aux_columns(run.raw_model) + (["val_loss", "val_top1"] if "val" in run.eval_loaders else [])
    extra += ema_columns(run)
    resumed = run.resume_path is not None
    run.writer = MetricsWriter(
        config.run_dir / "metrics.csv", extra, resume_epoch=run.start_epoch - 1 if resumed else None
    )
    save_config(config, config.run_dir / "config.yaml")
    env = collect_env(
        engine.device,
        world_size=engine.world_size,
        precision=config.precision,
        workers=config.workers,
        threads_requested=config.threads,
        start_time=datetime.datetime.now().isoformat(timespec="seconds"),
        data=data.notes,
        **({"resumed_from": str(run.resume_path)} if resumed else {}),
    )
    atomic_write_json(config.run_dir / "env.json", env)
    logger.info(
        "run %s: %s params %s, %d train / %d test images, world size %d, %s, %s",
        config.run_dir,
        config.model,
        f"{run.params:,}",
        len(data.train) if hasattr(data.train, "__len__") else -1,
        len(data.test) if hasattr(data.test, "__len__") else -1,
        engine.world_size,
        f"{run.threads} thread{'' if run.threads == 1 else 's'}",
        data.notes,
    )


def _log_epoch(run: _Run, row: dict[str, Any]) -> None:
    """Rank 0: append the metrics row, log one line, and feed TensorBoard."""
    run.writer.write(row)
    logger.info(
        "epoch %d/%d lr %.5g train loss %.4f top1 %.2f | eval loss %s top1 %s | %.1f s, %.0f img/s",
        row["epoch"],
        run.config.epochs - 1,
        row["lr"],
        row["train_loss"],
        row["train_top1"],
        f"{row['eval_loss']:.4f}" if "eval_loss" in row else "-",
        f"{row['eval_top1']:.2f}" if "eval_top1" in row else "-",
        row["epoch_time_s"],
        row["train_samples_per_s"],
    )
    log_to_loggers(run, row)


def _num(r: dict[str, Any], k: str) -> float | None:
    return float(r[k]) if r.get(k) not in (None, "") else None


def _summary(run: _Run) -> dict[str, Any]:
    """Rank 0: final weights, ``curves.png``, ``report.md`` and, last, ``summary.json`` (best AND final)."""
    config, run_dir = run.config, run.config.run_dir
    weights = save_weights(run.raw_model, run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    evald = [r for r in rows if r.get("eval_top1")]
    last = run.last_eval or (evald[-1] if evald else {})
    best_row = next((r for r in evald if int(r["epoch"]) == run.best_epoch), {})
    found = run.best_epoch >= 0
    on_test = run.select_on == "test"
    summary = {
        "run_name": config.resolved_run_name,
        "run_dir": str(run_dir),
        "model": config.model,
        "attn": config.attn,
        "dataset": config.dataset,
        "seed": config.seed,
        "world_size": run.engine.world_size,
        "epochs_run": len(rows),
        "epochs": config.epochs,
        "best_eval_top1": (run.best_metric if on_test else _num(best_row, "eval_top1")) if found else None,
        "best_epoch": run.best_epoch if found else None,
        "best_val_top1": run.best_metric if not on_test and found else None,
        "final_eval_top1": _num(last, "eval_top1"),
        "final_eval_top5": _num(last, "eval_top5"),
        "final_eval_loss": _num(last, "eval_loss"),
        "final_epoch": int(last["epoch"]) if last else None,
        "final_train_loss": _num(rows[-1], "train_loss") if rows else None,
        "params": run.params,
        "macs": run.macs,
        "threads": run.threads,
        "wall_time_s": time.perf_counter() - run.t_start,
        "selection": (
            "best epoch chosen on the TEST set (the papers' protocol, optimistic)"
            if on_test
            else f"best epoch chosen on a held-out val split of {config.val_split}"
        ),
        "weights": weights,
        "config": config.to_dict(),
    }
    summary.update(save_ema_weights(run, last))
    has_curves = plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    write_report(run_dir / "report.md", summary, has_curves)
    # last: a run folder with summary.json holds every file of a finished run (``attnkit compare --resume``
    # reuses such a run as it is); a kill before this point leaves a run that resuming finishes
    atomic_write_json(run_dir / "summary.json", summary)
    logger.info(
        "done: best eval top1 %s (epoch %s), final %s, %.1f s",
        "-" if summary["best_eval_top1"] is None else f"{summary['best_eval_top1']:.2f}",
        summary["best_epoch"],
        "-" if summary["final_eval_top1"] is None else f"{summary['final_eval_top1']:.2f}",
        summary["wall_time_s"],
    )
    return summary
