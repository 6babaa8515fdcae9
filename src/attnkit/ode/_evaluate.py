"""Evaluation of a trained corrector run against classical solvers (``attnkit ode eval``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .._io import markdown_table, save_figure, write_results
from .._runtime import set_threads
from ._baselines import dop853_ensemble
from ._odeint import odeint
from .data import load_or_make
from .metrics import blowup_rate, energy_drift, ensemble_statistics, relative_l2, trajectory_mse
from .train import load_checkpoint

__all__ = ["evaluate_run", "score", "timed"]


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call, wall-clock."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def score(system, pred: torch.Tensor, ref: torch.Tensor) -> dict:
    """Error, energy drift, ensemble statistics and blow-up rate of ``pred`` against ``ref`` ``(T+1, N, d)``."""
    finite = bool(torch.isfinite(pred).all())
    out = {
        "mse": trajectory_mse(pred, ref) if finite else math.inf,
        "mse_first100": trajectory_mse(pred, ref, slice(1, 101)) if finite else math.inf,
        "rel_l2_median_T": float(relative_l2(pred, ref).median()) if finite else math.inf,
        "blowup_rate": blowup_rate(pred),
    }
    try:
        ed = energy_drift(system, pred)
        out["energy_drift_median_T"] = float(ed[-1].median())
        out["energy_drift_max"] = float(ed.max())
    except NotImplementedError:
        pass
    out.update({f"ens_{k}": v for k, v in ensemble_statistics(pred, ref).items()})
    return out


def evaluate_run(args) -> int:
    """Evaluate ``args.run`` (see ``attnkit ode eval --help``); writes metrics.json/.md and two plots."""
    import matplotlib.pyplot as plt

    set_threads(args.threads)
    run = Path(args.run)
    ck_path = run / f"{args.which}.pt"
    if not ck_path.exists():
        raise FileNotFoundError(f"no checkpoint {ck_path} (is --run an `attnkit ode train` folder?)")
    solver, system, ck = load_checkpoint(ck_path)
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    dt = float(ck["dt"])
    data_dir = Path(args.data_dir or cfg.get("data_dir") or run.parent / "data")
    test = load_or_make(
        system,
        "test",
        args.n_test,
        dt=dt,
        n_steps=cfg.get("steps"),
        cache_dir=data_dir,
        reference_substeps=cfg.get("reference_substeps"),
    )
    y0, n = test[0], test.shape[0] - 1
    t = torch.arange(n + 1, dtype=torch.float64) * dt
    rows = []
    with torch.no_grad():
        odeint(system, y0[:2], t[:3], method=solver)  # warm-up
        pred, sec = timed(odeint, system, y0, t, method=solver)
        nfe = n * solver.nfe
        rows.append(
            {
                "method": f"{ck['corrector_config']['kind']} + {solver.base_name}",
                "step": dt,
                "nfe_per_traj": nfe,
                "corrector_calls": n,
                "seconds": sec,
                **score(system, pred, test),
            }
        )
        curves = {rows[0]["method"]: ((pred[1:] - test[1:]) ** 2).mean((1, 2))}
        for h in [float(x) for x in args.classical.split(",") if x]:
            if abs(dt / h - round(dt / h)) > 1e-9:
                raise ValueError(f"--classical step {h} does not divide dt={dt}")
            p, s = timed(odeint, system, y0, t, method=solver.base_name, options={"step_size": h})
            rows.append(
                {
                    "method": solver.base_name,
                    "step": h,
                    "nfe_per_traj": round(n * dt / h) * solver.nfe,
                    "corrector_calls": 0,
                    "seconds": s,
                    **score(system, p, test),
                }
            )
            curves[f"{solver.base_name} h={h:g}"] = ((p[1:] - test[1:]) ** 2).mean((1, 2))
        for rtol in [float(x) for x in args.dop853.split(",") if x]:
            (p, nf), s = timed(dop853_ensemble, system, y0, t.numpy(), rtol)
            rows.append(
                {
                    "method": "DOP853 (scipy, ensemble)",
                    "step": f"rtol={rtol:g}",
                    "nfe_per_traj": nf,
                    "corrector_calls": 0,
                    "seconds": s,
                    **score(system, p, test),
                }
            )
    base_rows = [r for r in rows if r["method"] == solver.base_name and math.isfinite(r["mse"])]
    finest = min(base_rows, key=lambda r: r["step"]) if base_rows else None
    summary = {
        "run": str(run),
        "checkpoint": args.which,
        "system": system.name,
        "dt": dt,
        "n_test": int(y0.shape[0]),
        "n_steps": n,
        "rows": rows,
    }
    if finest is not None and math.isfinite(rows[0]["mse"]):
        summary["step_equivalent"] = finest["step"] * (rows[0]["mse"] / finest["mse"]) ** (
            1 / (2 * solver.order)
        )
    keys = [
        "method",
        "step",
        "mse",
        "mse_first100",
        "rel_l2_median_T",
        "energy_drift_median_T",
        "blowup_rate",
        "ens_w1",
        "nfe_per_traj",
        "corrector_calls",
        "seconds",
    ]
    title = (
        f"{system.name}: {rows[0]['method']} at h = {dt:g} ({args.which} checkpoint), "
        f"{y0.shape[0]} test trajectories x {n} steps"
    )
    notes = ""
    if "step_equivalent" in summary:
        notes = (
            f"Step-equivalent of the corrected solver (MSE ~ h^{2 * solver.order}): "
            f"h_eq = {summary['step_equivalent']:.4g}"
        )
    table = markdown_table(rows, keys, formats={k: ".3g" for k in keys})
    meta = {k: v for k, v in summary.items() if k != "rows"}
    write_results(run, "metrics", rows, title=title, table=table, notes=notes, meta=meta)
    print("\n".join([f"# {title}", "", table] + (["", notes] if notes else [])))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.semilogy(t[1:].numpy(), c.clamp_min(1e-30).numpy(), label=name)
    ax.set(xlabel="time", ylabel="MSE over test ensemble", title=f"{system.name}: error over time")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run / "error_over_time.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, sel in [
        (solver.base_name, lambda r: r["method"] == solver.base_name),
        ("DOP853", lambda r: r["method"].startswith("DOP853")),
        (rows[0]["method"], lambda r: r is rows[0]),
    ]:
        pts = [(r["seconds"], r["mse"]) for r in rows if sel(r) and math.isfinite(r["mse"])]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.loglog(xs, np.maximum(ys, 1e-30), "o-", label=label)
    ax.set(xlabel="wall-clock for the ensemble (s)", ylabel="trajectory MSE", title="error vs cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run / "pareto.png")
    plt.close(fig)
    return 0
