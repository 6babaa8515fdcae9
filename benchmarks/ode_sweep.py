"""Data-size and noise sweep for the AttSolver/AttNS claims: NeurVec vs AttNS (attnkit reconstruction).

Usage::

    python benchmarks/ode_sweep.py --out benchmarks/results

For each corrector (NeurVec; AttNS additive and multiplicative, attnkit reconstruction; equal width and
budget), each fraction of training trajectories (100/10/1 %) and each noise level (Gaussian noise on the
training states, in units of the per-component state std), train on the elastic pendulum at h = 0.1
(rk4_classic base) and report the held-out rollout MSE (full horizon and first 100 steps) and the
blow-up rate. The AttNS design is not public; this tests our reconstruction, not the paper's model.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from attnkit.ode import (
    CorrectedSolver,
    blowup_rate,
    build_corrector,
    create_system,
    odeint,
    rollout,
    train_corrector,
    trajectory_mse,
)
from attnkit.ode.data import load_or_make

LABELS = {
    "neurvec": "NeurVec",
    "attns": "AttNS (attnkit reconstruction)",
    "attns_m": "AttNS-m (attnkit reconstruction)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--correctors", default="neurvec,attns,attns_m")
    ap.add_argument("--fractions", default="1.0,0.1,0.01")
    ap.add_argument("--noise", default="0,1e-3,1e-2")
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--data-dir", default="runs/ode/data")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    p = create_system("elastic_pendulum")
    train = load_or_make(p, "train", a.n_train, cache_dir=a.data_dir)
    val = load_or_make(p, "val", a.n_val, cache_dir=a.data_dir)
    test = load_or_make(p, "test", a.n_test, cache_dir=a.data_dir)
    t = torch.arange(test.shape[0], dtype=torch.float64) * 0.1
    base = odeint(p, test[0], t, method="rk4_classic", options={"step_size": 0.1})
    rows = [
        {
            "corrector": "none (rk4_classic)",
            "fraction": None,
            "noise_std": None,
            "mse": trajectory_mse(base, test),
            "mse_first100": trajectory_mse(base, test, slice(1, 101)),
            "blowup_rate": blowup_rate(base),
        }
    ]
    curves = {}
    for kind in a.correctors.split(","):
        for frac in [float(x) for x in a.fractions.split(",")]:
            for noise in [float(x) for x in a.noise.split(",")]:
                torch.manual_seed(0)
                s = CorrectedSolver("rk4_classic", build_corrector(kind, 4, hidden=a.hidden), dt=0.1)
                t0 = time.time()
                res = train_corrector(
                    s,
                    p,
                    train,
                    val,
                    iterations=a.iterations,
                    batch_size=a.batch_size,
                    data_fraction=frac,
                    noise_std=noise,
                    val_every=a.iterations // 3,
                    seed=0,
                    log=lambda *x: None,
                )
                pred = rollout(s, p, test[0], test.shape[0] - 1, 0.1)
                fin = bool(torch.isfinite(pred).all())
                row = {
                    "corrector": LABELS[kind],
                    "fraction": frac,
                    "noise_std": noise,
                    "n_traj": math.ceil(frac * a.n_train),
                    "n_pairs": res.n_pairs,
                    "mse": trajectory_mse(pred, test) if fin else math.inf,
                    "mse_first100": trajectory_mse(pred, test, slice(1, 101))
                    if torch.isfinite(pred[:101]).all()
                    else math.inf,
                    "blowup_rate": blowup_rate(pred),
                    "seconds": time.time() - t0,
                }
                rows.append(row)
                err_t = ((pred[1:] - test[1:]) ** 2).mean((1, 2))
                curves[f"{LABELS[kind]}|{frac}|{noise}"] = err_t.nan_to_num(float("inf")).tolist()
                print(json.dumps(row))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in vars(a).items()}
    (out / "ode_sweep.json").write_text(json.dumps({"config": cfg, "rows": rows}, indent=2))
    md = [
        f"# Data-size and noise sweep, elastic pendulum, h = 0.1, rk4_classic base (width {a.hidden}, "
        f"{a.iterations} iterations, batch {a.batch_size}, {a.n_train} training trajectories = 100 %, "
        f"{a.n_test} test trajectories x {test.shape[0] - 1} steps)",
        "",
        "| corrector | data fraction | noise std | training trajectories | rollout MSE | first 100 steps | blow-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['corrector']} | {r['fraction'] if r['fraction'] is not None else '-'} | "
            f"{r['noise_std'] if r['noise_std'] is not None else '-'} | {r.get('n_traj', '-')} | "
            f"{r['mse']:.3g} | {r['mse_first100']:.3g} | {r['blowup_rate']:.2f} |"
        )
    (out / "ode_sweep.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    fr = [float(x) for x in a.fractions.split(",")]
    for ax, noise in zip(axes, [0.0, max(float(x) for x in a.noise.split(","))]):
        for kind in a.correctors.split(","):
            ys = [
                next(
                    r["mse"]
                    for r in rows
                    if r["corrector"] == LABELS[kind] and r["fraction"] == f and r["noise_std"] == noise
                )
                for f in fr
            ]
            ax.loglog(fr, [min(y, 1e3) for y in ys], "o-", label=LABELS[kind])
        ax.axhline(rows[0]["mse"], color="k", ls="--", label="plain rk4_classic h=0.1")
        ax.set(
            xlabel="fraction of training trajectories",
            ylabel="rollout MSE (capped at 1e3)",
            title=f"noise std = {noise:g}",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ode_sweep.png", dpi=120)


if __name__ == "__main__":
    main()
