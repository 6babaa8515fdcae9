"""Cost at equal error: a trained corrected coarse solver vs plain RK4 and vs scipy DOP853, side by side.

Usage::

    python benchmarks/ode_cost.py --ckpt runs/ode/pend/best.pt --n-traj 1000 --out benchmarks/results

All methods integrate the same ensemble (``--n-traj`` held-out initial conditions, test split seed 0) over
the same horizon in one process, single-threaded, float64 state. The corrected solver's error defines
"equal error": for each classical family the cheapest measured configuration whose trajectory MSE is
<= the corrected solver's is taken, and the speed-up is its wall-clock over the corrected solver's.
DOP853 integrates the whole ensemble as one stacked system (one vectorised right-hand-side call per
stage, scipy's RMS error norm), which is the fast way to use scipy on an ensemble.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from attnkit.ode import load_checkpoint, odeint, trajectory_mse
from attnkit.ode._baselines import dop853_ensemble
from attnkit.ode.data import load_or_make


def _time(fn, repeats: int):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _compiled_rollout(solver, system, y0: torch.Tensor, n: int, h: float, k: int):
    """Rollout with the whole fixed step fused by ``torch.compile`` (autonomous systems: t = 0)."""
    step = torch.compile(lambda y: solver.step(system, 0.0, y, h))

    def run():
        y, out = y0, [y0]
        for _ in range(n):
            for _ in range(k):
                y = step(y)
            out.append(y)
        return torch.stack(out)

    run()  # compile outside the timed region
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--n-traj", type=int, default=1000)
    ap.add_argument("--ks", default="1,2,4,5,8,10,20", help="RK4 steps h/k")
    ap.add_argument("--rtols", default="1e-4,1e-5,1e-6,1e-7,1e-8,1e-9")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data-dir", default="runs/ode/data")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="ode_cost")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="fuse each fixed-step method's whole step with torch.compile (both sides)",
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    solver, system, ck = load_checkpoint(a.ckpt)
    dt = float(ck["dt"])
    test = load_or_make(system, "test", a.n_traj, dt=dt, cache_dir=a.data_dir)
    y0, n = test[0], test.shape[0] - 1
    t = torch.arange(n + 1, dtype=torch.float64) * dt
    rows = []
    with torch.no_grad():
        odeint(system, y0[:4], t[:3], method=solver)  # warm-up
        if a.compile:
            pred, sec = _time(_compiled_rollout(solver, system, y0, n, dt, 1), a.repeats)
        else:
            pred, sec = _time(lambda: odeint(system, y0, t, method=solver), a.repeats)
        rows.append(
            {
                "method": f"{ck['corrector_config']['kind']} + {solver.base_name}",
                "family": "corrected",
                "setting": f"h={dt:g}",
                "mse": trajectory_mse(pred, test),
                "nfe_per_traj": n * solver.nfe,
                "seconds": sec,
            }
        )
        for k in [int(x) for x in a.ks.split(",")]:
            h = dt / k
            if a.compile:
                p, s = _time(_compiled_rollout(solver.base, system, y0, n, h, k), a.repeats)
            else:
                p, s = _time(
                    lambda h=h: odeint(system, y0, t, method=solver.base_name, options={"step_size": h}),
                    a.repeats,
                )
            rows.append(
                {
                    "method": solver.base_name,
                    "family": "rk4",
                    "setting": f"h={h:g}",
                    "mse": trajectory_mse(p, test),
                    "nfe_per_traj": n * k * solver.nfe,
                    "seconds": s,
                }
            )
        for rtol in [float(x) for x in a.rtols.split(",")]:
            (p, nf), s = _time(lambda r=rtol: dop853_ensemble(system, y0, t.numpy(), r), a.repeats)
            rows.append(
                {
                    "method": "DOP853 (scipy)",
                    "family": "dop853",
                    "setting": f"rtol={rtol:g}",
                    "mse": trajectory_mse(p, test),
                    "nfe_per_traj": nf,
                    "seconds": s,
                }
            )
    corr = rows[0]
    result = {
        "ckpt": a.ckpt,
        "compiled": a.compile,
        "system": system.name,
        "n_traj": a.n_traj,
        "n_steps": n,
        "dt": dt,
        "threads": 1,
        "rows": rows,
        "speedup_at_equal_error": {},
    }
    for fam in ("rk4", "dop853"):
        ok = [r for r in rows if r["family"] == fam and r["mse"] <= corr["mse"]]
        if ok:
            best = min(ok, key=lambda r: r["seconds"])
            result["speedup_at_equal_error"][fam] = {
                "setting": best["setting"],
                "mse": best["mse"],
                "ratio": best["seconds"] / corr["seconds"],
            }
        else:
            result["speedup_at_equal_error"][fam] = {
                "setting": None,
                "ratio": None,
                "note": "no measured setting reached the corrected error",
            }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.tag}.json").write_text(json.dumps(result, indent=2))
    md = [
        f"# Cost at equal error: {system.name}, {a.n_traj} trajectories x {n} steps (1 thread, float64 state"
        f"{', fixed steps fused with torch.compile' if a.compile else ', eager'})",
        "",
        "| method | setting | trajectory MSE | NFE / traj | wall-clock (s) |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['method']} | {r['setting']} | {r['mse']:.3g} | {r['nfe_per_traj']} | {r['seconds']:.3g} |"
        for r in rows
    ]
    md.append("")
    for fam, v in result["speedup_at_equal_error"].items():
        if v["ratio"] is None:
            md.append(f"- {fam}: {v['note']}")
        else:
            md.append(
                f"- {fam} at equal error ({v['setting']}, MSE {v['mse']:.3g}): corrected solver is "
                f"{v['ratio']:.2f}x faster"
                if v["ratio"] >= 1
                else f"- {fam} at equal error ({v['setting']}, MSE {v['mse']:.3g}): {fam} is "
                f"{1 / v['ratio']:.2f}x faster than the corrected solver"
            )
    (out / f"{a.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
