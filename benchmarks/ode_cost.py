"""Equal-error cost of a trained corrected coarse solver against the strongest classical solvers.

Usage::

    python benchmarks/ode_cost.py --ckpt runs/ode/pend/best.pt --n 1000,10000 --dtypes float64,float32 \
        --modes eager,compiled --threads 1 --rounds 3 --tag ode_cost_pend

Protocol (one process, one configuration = system x N x state dtype x eager/compiled x threads):

- Every arm integrates the same ensemble of N held-out initial conditions (test split, seed 0) over the
  same horizon. Arms: the corrected solver (its trained step, ``fast_rollout`` with a measured block size,
  compiled or not); classical RK4 at h/k; fixed-step RK8 (DOP853 tableau) at h/k; torchdiffeq ``dopri5``
  and torchode ``Dopri5`` (per-trajectory steps) at several tolerances; scipy DOP853 on the stacked
  ensemble with a NumPy right-hand side (float64 only). Fixed-step arms use the same rollout code
  (inference mode, measured block size, same compile mode) as the corrected solver.
- Eager tables hold eager arms only; compiled tables hold only arms that have a compiled form (the
  fixed-step ones). Compile time and the block-size probe are excluded (a warm-up run precedes timing).
- Timing is interleaved: each round runs every arm once (the order rotates by one arm per round), so
  load from the shared machine hits every arm of a round alike. The 1-minute load average is recorded.
- Error: trajectory MSE (t = 0 excluded) on the first ``min(N, n_err)`` trajectories against the
  system's trusted reference (exact propagator, or a fine-step RK4/RK8 in float64).
- Equal error: per round, each family's time at the corrected solver's error by log-log interpolation of
  its error-vs-time points (``attnkit.ode._bench``); the ratio is that over the corrected solver's time
  in the same round; median and spread over rounds. Beyond one decade outside a family's measured
  errors only a bound is reported (">=" / "<=").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from attnkit._io import atomic_write_json, markdown_table, write_results
from attnkit._runtime import collect_env
from attnkit.ode import load_checkpoint, trajectory_mse
from attnkit.ode._baselines import dop853_ensemble, torchdiffeq_ensemble, torchode_ensemble
from attnkit.ode._bench import cost_at_error, equal_error_ratio
from attnkit.ode.data import load_or_make
from attnkit.ode.fast import best_chunk_size, fast_rollout

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _arms(solver, system, y0, n, dt, dtype, compiled, a):
    """``{name: (family, setting, nfe per trajectory, fn -> trajectory)}`` for one configuration."""
    t = torch.arange(n + 1, dtype=torch.float64) * dt
    arms = {}

    def fixed(s, h, k):
        return lambda: fast_rollout(
            s, system, y0, n, h, substeps=k, chunk="auto", compile=compiled, dtype=dtype
        )

    arms["corrected"] = ("corrected", f"h={dt:g}", n * solver.nfe, fixed(solver, dt, 1))
    for k in a.rk4_k:
        arms[f"rk4 h={dt / k:.4g}"] = (
            "rk4",
            f"h={dt / k:.4g}",
            n * k * 4,
            fixed(solver.base_name, dt / k, k),
        )
    for k in a.rk8_k:
        arms[f"rk8 h={dt / k:.4g}"] = ("rk8", f"h={dt / k:.4g}", n * k * 12, fixed("rk8", dt / k, k))
    if compiled:
        return arms
    y = y0.to(dtype)
    for r in a.dopri5:
        arms[f"dopri5 rtol={r:g}"] = (
            "dopri5",
            f"rtol={r:g}",
            None,
            lambda r=r: torchdiffeq_ensemble(system, y, t, r),
        )
    for r in a.torchode:
        arms[f"torchode rtol={r:g}"] = (
            "torchode",
            f"rtol={r:g}",
            None,
            lambda r=r: torchode_ensemble(system, y, t, r),
        )
    for r in a.dop853:
        arms[f"scipy DOP853 rtol={r:g}"] = (
            "scipy_dop853",
            f"rtol={r:g}",
            None,
            lambda r=r: dop853_ensemble(system, y0, t.numpy(), r),
        )
    return arms


def _unpack(out):
    return out if isinstance(out, tuple) else (out, None)


def run_config(solver, system, ref, y0, dt, dtype, compiled, threads, a):
    """Warm up, time every arm interleaved for ``a.rounds`` rounds; return the arm rows and metadata."""
    torch.set_num_threads(threads)
    n = ref.shape[0] - 1
    n_err = min(y0.shape[0], ref.shape[1])
    arms = _arms(solver, system, y0, n, dt, dtype, compiled, a)
    info = {}
    for name, (fam, setting, nfe, fn) in arms.items():
        t0 = time.perf_counter()
        out, nf = _unpack(fn())  # warm-up: compile, block-size probe; also the (deterministic) error
        info[name] = {
            "family": fam,
            "setting": setting,
            "nfe_per_traj": nfe if nfe is not None else (nf / 1.0 if fam == "torchode" else nf),
            "mse": trajectory_mse(out[:, :n_err].double(), ref[:, :n_err]),
            "warmup_s": time.perf_counter() - t0,
        }
        del out
    names = list(arms)
    times = {k: [] for k in names}
    load0 = os.getloadavg()[0]
    for r in range(a.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            arms[name][3]()
            times[name].append(time.perf_counter() - t0)
    load1 = os.getloadavg()[0]
    rows = []
    for name in names:
        rows.append(
            {"arm": name, **info[name], "median_s": statistics.median(times[name]), "round_s": times[name]}
        )
    chunk = best_chunk_size(solver, system, y0.to(dtype), dt, compile=compiled)
    return rows, {"load_avg_start": load0, "load_avg_end": load1, "corrected_block": chunk}


def _fmt_ratio(r):
    if r["ratio"] != r["ratio"]:
        return "—"
    pre = {"at_least": "≥ ", "at_most": "≤ "}.get(r["status"], "")
    ext = " (extrap.)" if r["status"] == "extrapolated" else ""
    return f"{pre}{r['ratio']:.2f}× [{r['low']:.2f}, {r['high']:.2f}]{ext}"


def _fmt_bound(v, status):
    if v != v:
        return "—"
    return {"at_least": "≥ ", "at_most": "≤ "}.get(status, "") + f"{v:.2f}×"


def _floats(s):
    return [float(x) for x in s.split(",") if x]


def _ints(s):
    return [int(x) for x in s.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--n", default="1000,10000", help="ensemble sizes")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--threads", default="1", help="comma-separated; 'all' = every core")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rk4-k", type=_ints, default=_ints("5,8,10,16"), help="RK4 steps h/k")
    ap.add_argument("--rk8-k", type=_ints, default=_ints("1,2"))
    ap.add_argument("--dopri5", type=_floats, default=_floats("1e-6,1e-8"))
    ap.add_argument("--torchode", type=_floats, default=_floats("1e-6,1e-8"))
    ap.add_argument("--dop853", type=_floats, default=_floats("1e-6,1e-7,1e-8"))
    ap.add_argument("--slow-max-n", type=int, default=1000, help="dopri5/torchode only up to this N")
    ap.add_argument("--n-err", type=int, default=1000, help="trajectories the error is measured on")
    ap.add_argument("--data-dir", default="runs/ode/data")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--recompute", default=None, help="rewrite the tables from a results JSON (no timing)")
    a = ap.parse_args()
    if a.recompute:
        res = json.loads(Path(a.recompute).read_text())
        meta = {k: v for k, v in res.items() if k not in ("title", "rows", "arms")}
        report(a.out, a.tag, meta, res["arms"] if "arms" in res else res["rows"])  # final or partial file
        return
    solver, system, ck = load_checkpoint(a.ckpt)
    dt = float(ck["dt"])
    ref = load_or_make(system, "test", a.n_err, dt=dt, cache_dir=a.data_dir)  # (T+1, n_err, d) float64
    all_rows: list[dict] = []
    meta = {
        "env": collect_env(),
        "ckpt": a.ckpt,
        "system": system.name,
        "dt": dt,
        "n_steps": ref.shape[0] - 1,
        "rounds": a.rounds,
        "n_err": a.n_err,
        "configs": [],
    }
    for n in _ints(a.n):
        y0 = system.sample_initial_conditions(n, generator=torch.Generator().manual_seed(0))
        assert torch.equal(y0[: a.n_err], ref[0, : min(n, a.n_err)])  # the same draws as the reference
        for threads_s in a.threads.split(","):
            threads = os.cpu_count() if threads_s == "all" else int(threads_s)
            for mode in a.modes.split(","):
                for dts in a.dtypes.split(","):
                    aa = argparse.Namespace(**vars(a))
                    if n > a.slow_max_n:
                        aa.dopri5, aa.torchode = [], []
                    if dts != "float64":
                        aa.dop853 = []  # scipy is float64 only: it is compared in the float64 tables
                        # adaptive torch solvers in float32: tolerances below 1e-6 sit at round-off
                        aa.dopri5 = [r for r in aa.dopri5 if r >= 1e-6]
                        aa.torchode = [r for r in aa.torchode if r >= 1e-6]
                    t0 = time.time()
                    rows, m = run_config(
                        solver, system, ref, y0, dt, DTYPES[dts], mode == "compiled", threads, aa
                    )
                    cfg = {
                        "n": n,
                        "threads": threads,
                        "mode": mode,
                        "dtype": dts,
                        **m,
                        "wall_s": time.time() - t0,
                    }
                    meta["configs"].append(cfg)
                    print(cfg, flush=True)
                    for r in rows:
                        all_rows.append({**{k: cfg[k] for k in ("n", "threads", "mode", "dtype")}, **r})
                    atomic_write_json(Path(a.out) / f"{a.tag}_partial.json", {**meta, "arms": all_rows})
    report(a.out, a.tag, meta, all_rows)
    (Path(a.out) / f"{a.tag}_partial.json").unlink(missing_ok=True)


CONFIG_KEYS = ("n", "threads", "mode", "dtype")


def ratios_of(arms: list[dict]) -> list[dict]:
    """Per configuration and baseline family, the per-round equal-error ratio (``attnkit.ode._bench``)."""
    out = []
    for cfg in dict.fromkeys(tuple(r[k] for k in CONFIG_KEYS) for r in arms):
        rows = [r for r in arms if tuple(r[k] for k in CONFIG_KEYS) == cfg]
        corr = next(r for r in rows if r["family"] == "corrected")
        for fam in dict.fromkeys(r["family"] for r in rows if r["family"] != "corrected"):
            members = [r for r in rows if r["family"] == fam]
            rr = equal_error_ratio(
                corr["round_s"],
                corr["mse"],
                {r["arm"]: r["round_s"] for r in members},
                {r["arm"]: r["mse"] for r in members},
            )
            ne = cost_at_error([r["nfe_per_traj"] for r in members], [r["mse"] for r in members], corr["mse"])
            nfe_ratio = ne.cost / corr["nfe_per_traj"]
            out.append(
                {
                    **dict(zip(CONFIG_KEYS, cfg)),
                    "family": fam,
                    "ratio": rr.ratio,
                    "low": rr.low,
                    "high": rr.high,
                    "status": rr.status,
                    "corrected_mse": corr["mse"],
                    "corrected_s": corr["median_s"],
                    "nfe_ratio": nfe_ratio,
                    "nfe_status": ne.status,
                }
            )
    return out


def report(out: str, tag: str, meta: dict, all_rows: list[dict]) -> None:
    """Write ``{tag}.json/.csv/.md``: the ratio table (recomputed from the arms' round times) and every arm."""
    all_ratios = ratios_of(all_rows)
    ratio_rows = [
        {**r, "speed-up": _fmt_ratio(r), "NFE": _fmt_bound(r["nfe_ratio"], r["nfe_status"])}
        for r in all_ratios
    ]
    table = markdown_table(
        ratio_rows,
        ["n", "threads", "mode", "dtype", "family", "speed-up", "NFE", "corrected_mse", "corrected_s"],
        headers={
            "speed-up": "corrected solver's speed-up at equal error (median [spread])",
            "NFE": "RHS evaluations at equal error, baseline / corrected (corrector calls not counted)",
            "corrected_mse": "corrected MSE",
            "corrected_s": "corrected s",
        },
        formats={"corrected_mse": ".3g", "corrected_s": ".3g"},
    )
    arm_table = markdown_table(
        all_rows,
        ["n", "threads", "mode", "dtype", "arm", "mse", "nfe_per_traj", "median_s"],
        formats={"mse": ".3g", "median_s": ".3g", "nfe_per_traj": ".0f"},
    )
    loads = [c["load_avg_start"] for c in meta["configs"]] + [c["load_avg_end"] for c in meta["configs"]]
    notes = (
        f"{meta['system']}, {meta['n_steps']} steps of h = {meta['dt']:g}; {meta.get('rounds') or len(all_rows[0]['round_s'])} interleaved rounds "
        f"per configuration; error on the first {meta.get('n_err', 1000)} trajectories. Machine shared with other jobs: "
        f"1-minute load average {min(loads):.1f}–{max(loads):.1f} during timing. > 1: the corrected solver "
        "is faster. '≥'/'≤': the corrected error lies more than a decade outside the family's measured "
        "errors (or below a float32 round-off floor), so only a bound is known.\n\n## Every arm\n\n"
        + arm_table
    )
    write_results(
        out,
        tag,
        ratio_rows,
        title=f"Equal-error speed-up of the corrected solver: {meta['system']}",
        table=table,
        notes=notes,
        meta={**meta, "arms": all_rows},
    )
    print(table)


if __name__ == "__main__":
    main()
