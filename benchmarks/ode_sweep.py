"""Data-size and noise sweep for the AttSolver/AttNS claims: NeurVec vs AttNS (attnkit reconstruction).

Usage::

    python benchmarks/ode_sweep.py                                   # 3 seeds, fractions 1/0.5/0.25/0.1
    python benchmarks/ode_sweep.py --seeds 0 --fractions 1,0.1 --noise 0 --iterations 200 --tag ode_sweep_quick

For each seed, corrector (NeurVec; AttNS additive and multiplicative, attnkit reconstruction; equal width
and budget), fraction of the training trajectories and noise level (Gaussian noise on the training
states, in units of the per-component state std), train on the elastic pendulum (``--base`` at ``--dt``,
default rk4_classic at h = 0.1) and report the held-out rollout MSE (full horizon and first 100 steps)
and the blow-up rate. Arms of one seed share the seed (same initialisation stream, same batches), so
the table gives, per cell, the geometric mean and the std of log10 MSE over seeds, and the paired
per-seed difference of log10 MSE against NeurVec (negative: lower error than NeurVec).

Every finished run is appended to ``<tag>_runs.jsonl`` at once; a rerun with the same settings skips
the runs already there, so an interrupted sweep keeps what it finished. The AttNS design is not public:
this tests attnkit's reconstruction, not the paper's model.

Writes ``benchmarks/results/<tag>.{json,csv,md}`` and ``<tag>.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata  # noqa: E402

from attnkit._io import atomic_write_text, save_figure, write_results  # noqa: E402
from attnkit.ode import (  # noqa: E402
    CorrectedSolver,
    blowup_rate,
    build_corrector,
    create_system,
    odeint,
    rollout,
    train_corrector,
    trajectory_mse,
)
from attnkit.ode.data import load_or_make  # noqa: E402

LABELS = {
    "neurvec": "NeurVec",
    "attns": "AttNS (attnkit reconstruction)",
    "attns_m": "AttNS-m (attnkit reconstruction)",
}
SETTINGS = ("base", "dt", "hidden", "iterations", "batch_size", "n_train", "n_val", "n_test")


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",")]


def _log10(x: float) -> float:
    return math.log10(x) if 0 < x < math.inf else math.inf


def _mse(pred: torch.Tensor, ref: torch.Tensor, sl: slice | None = None) -> float:
    part = pred if sl is None else pred[sl]
    if not torch.isfinite(part).all():
        return math.inf
    return trajectory_mse(pred, ref) if sl is None else trajectory_mse(pred, ref, sl)


def one_run(a, system, train, val, test, kind: str, frac: float, noise: float, seed: int) -> dict:
    """Train one corrector and measure it on the held-out trajectories."""
    torch.manual_seed(seed)
    s = CorrectedSolver(a.base, build_corrector(kind, 4, hidden=a.hidden), dt=a.dt)
    t0 = time.time()
    res = train_corrector(
        s,
        system,
        train,
        val,
        iterations=a.iterations,
        batch_size=a.batch_size,
        data_fraction=frac,
        noise_std=noise,
        val_every=max(1, a.iterations // 3),
        seed=seed,
        log=lambda *x: None,
    )
    pred = rollout(s, system, test[0], test.shape[0] - 1, a.dt)
    return {
        "kind": kind,
        "fraction": frac,
        "noise_std": noise,
        "seed": seed,
        "n_traj": math.ceil(frac * a.n_train),
        "n_pairs": res.n_pairs,
        "mse": _mse(pred, test),
        "mse_first100": _mse(pred, test, slice(1, 101)),
        "blowup_rate": blowup_rate(pred),
        "seconds": time.time() - t0,
    }


def _paired(by: dict, kind: str, frac: float, noise: float, seeds: list[int], field: str) -> list[float]:
    """Per-seed log10(field) of ``kind`` minus NeurVec's, finite pairs only."""
    diffs = [
        _log10(by[kind, frac, noise, s][field]) - _log10(by["neurvec", frac, noise, s][field])
        for s in seeds
        if (kind, frac, noise, s) in by and ("neurvec", frac, noise, s) in by
    ]
    return [d for d in diffs if math.isfinite(d)]


def _geomean(values: list[float]) -> float:
    logs = [_log10(v) for v in values]
    return math.inf if not logs or math.inf in logs else 10 ** statistics.fmean(logs)


def aggregate(runs: list[dict], seeds: list[int]) -> list[dict]:
    """One row per (corrector, fraction, noise): geometric-mean MSE (full horizon and first 100 steps),
    std of log10 MSE, paired differences against NeurVec and the blow-up rate (mean ± std over seeds)."""
    by = {(r["kind"], r["fraction"], r["noise_std"], r["seed"]): r for r in runs}
    rows = []
    for kind, frac, noise in dict.fromkeys((r["kind"], r["fraction"], r["noise_std"]) for r in runs):
        cell = [by[kind, frac, noise, s] for s in seeds if (kind, frac, noise, s) in by]
        logs = [_log10(r["mse"]) for r in cell]
        finite = [x for x in logs if x < math.inf]
        rates = [r["blowup_rate"] for r in cell]
        other = kind != "neurvec"
        row = {
            "corrector": LABELS[kind],
            "fraction": frac,
            "noise_std": noise,
            "n_traj": cell[0]["n_traj"] if cell else None,
            "seeds": len(cell),
            "mse_geomean": _geomean([r["mse"] for r in cell]),
            "log10_mse_std": statistics.stdev(finite) if len(finite) > 1 else None,
            "mse_first100_geomean": _geomean([r["mse_first100"] for r in cell]),
            "blowup_rate_mean": statistics.fmean(rates) if rates else None,
            "blowup_rate_std": statistics.stdev(rates) if len(rates) > 1 else None,
        }
        for name, field in (("", "mse"), ("_first100", "mse_first100")):
            d = _paired(by, kind, frac, noise, seeds, field) if other else []
            row[f"diff{name}_vs_neurvec"] = statistics.fmean(d) if d else None
            row[f"diff{name}_std"] = statistics.stdev(d) if len(d) > 1 else None
            row[f"wins{name}_vs_neurvec"] = f"{sum(x < 0 for x in d)}/{len(d)}" if d else None
        pairs = [
            by[kind, frac, noise, s]["blowup_rate"] - by["neurvec", frac, noise, s]["blowup_rate"]
            for s in seeds
            if other and (kind, frac, noise, s) in by and ("neurvec", frac, noise, s) in by
        ]
        row["diff_blowup_vs_neurvec"] = statistics.fmean(pairs) if pairs else None
        row["diff_blowup_std"] = statistics.stdev(pairs) if len(pairs) > 1 else None
        row["fewer_blowups_vs_neurvec"] = f"{sum(x < 0 for x in pairs)}/{len(pairs)}" if pairs else None
        rows.append(row)
    return rows


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None:
        return "—"
    return format(mean, fmt) + ("" if std is None else f" ± {std:.2f}")


def table(rows: list[dict]) -> str:
    """The markdown table of :func:`aggregate`'s rows."""
    head = (
        "| corrector | data fraction | noise std | trajectories | seeds | rollout MSE (geo. mean) | "
        "std log10 | Δlog10 MSE vs NeurVec (paired) | lower | MSE, first 100 steps | "
        "Δlog10 first-100 MSE vs NeurVec (paired) | lower | blow-up rate (mean ± std) | "
        "Δ blow-up rate vs NeurVec (paired) | fewer |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        sd = "—" if r["log10_mse_std"] is None else f"{r['log10_mse_std']:.2f}"
        lines.append(
            f"| {r['corrector']} | {r['fraction']:g} | {r['noise_std']:g} | {r['n_traj']} | {r['seeds']} | "
            f"{r['mse_geomean']:.2g} | {sd} | {_pm(r['diff_vs_neurvec'], r['diff_std'], '+.2f')} | "
            f"{r['wins_vs_neurvec'] or '—'} | {r['mse_first100_geomean']:.2g} | "
            f"{_pm(r['diff_first100_vs_neurvec'], r['diff_first100_std'], '+.2f')} | "
            f"{r['wins_first100_vs_neurvec'] or '—'} | "
            f"{_pm(r['blowup_rate_mean'], r['blowup_rate_std'], '.2f')} | "
            f"{_pm(r['diff_blowup_vs_neurvec'], r['diff_blowup_std'], '+.2f')} | "
            f"{r['fewer_blowups_vs_neurvec'] or '—'} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], base_mse: float, noises: list[float], path: Path) -> None:
    """Geometric-mean rollout MSE (top) and blow-up rate (bottom) against the data fraction, one column
    per noise level. Where some run has a non-finite full-horizon MSE, the top row shows the MSE over the
    first 100 steps instead (and says so)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    full = all(math.isfinite(r["mse_geomean"]) for r in rows)
    field, what = ("mse_geomean", "rollout MSE") if full else ("mse_first100_geomean", "MSE, first 100 steps")
    fig = Figure(figsize=(5.2 * len(noises), 7.5))
    axes = fig.subplots(2, len(noises), squeeze=False)
    for col, noise in enumerate(noises):
        top, bottom = axes[0][col], axes[1][col]
        for label in LABELS.values():
            pts = sorted(
                (r["fraction"], r) for r in rows if r["corrector"] == label and r["noise_std"] == noise
            )
            if not pts:
                continue
            xs = [f for f, _ in pts]
            ys = [r[field] for _, r in pts]
            if full:
                err = [10 ** (r["log10_mse_std"] or 0.0) for _, r in pts]  # one std of log10, as a factor
                yerr = [[y - y / e for y, e in zip(ys, err)], [y * e - y for y, e in zip(ys, err)]]
            else:
                yerr = None
            top.errorbar(xs, ys, yerr=yerr, fmt="o-", capsize=3, label=label)
            bottom.errorbar(
                xs,
                [r["blowup_rate_mean"] for _, r in pts],
                yerr=[r["blowup_rate_std"] or 0.0 for _, r in pts],
                fmt="o-",
                capsize=3,
                label=label,
            )
        if full:
            top.axhline(base_mse, color="k", ls="--", label="plain base solver")
        top.set_yscale("log")
        top.set(ylabel=f"{what} (geo. mean over seeds)", title=f"noise std = {noise:g}")
        bottom.set(ylabel="blow-up rate (mean ± std over seeds)", ylim=(-0.05, 1.05))
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set(xlabel="fraction of training trajectories")
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--correctors", default="neurvec,attns,attns_m")
    ap.add_argument("--fractions", default="1.0,0.5,0.25,0.1")
    ap.add_argument("--noise", default="0,1e-2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--base", default="rk4_classic")
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=20)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default="runs/ode/data")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--tag", default="ode_sweep")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    system = create_system("elastic_pendulum")
    train = load_or_make(system, "train", a.n_train, cache_dir=a.data_dir)
    val = load_or_make(system, "val", a.n_val, cache_dir=a.data_dir)
    test = load_or_make(system, "test", a.n_test, cache_dir=a.data_dir)
    t = torch.arange(test.shape[0], dtype=torch.float64) * a.dt
    base = odeint(system, test[0], t, method=a.base, options={"step_size": a.dt})
    base_mse = _mse(base, test)
    settings = {k: getattr(a, k) for k in SETTINGS}
    log_path = out / f"{a.tag}_runs.jsonl"
    done: list[dict] = []
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            r = json.loads(line)
            if r.get("settings") == settings:
                done.append(r)
    key = lambda r: (r["kind"], r["fraction"], r["noise_std"], r["seed"])  # noqa: E731
    have = {key(r) for r in done}
    for seed in a.seeds:
        for kind in a.correctors.split(","):
            for frac in _floats(a.fractions):
                for noise in _floats(a.noise):
                    if (kind, frac, noise, seed) in have:
                        continue
                    r = {
                        **one_run(a, system, train, val, test, kind, frac, noise, seed),
                        "settings": settings,
                    }
                    done.append(r)
                    atomic_write_text(log_path, "".join(json.dumps(x) + "\n" for x in done))
                    print(json.dumps({k: v for k, v in r.items() if k != "settings"}), flush=True)
    wanted = [
        r
        for r in done
        if r["seed"] in a.seeds
        and r["kind"] in a.correctors.split(",")
        and r["fraction"] in _floats(a.fractions)
        and r["noise_std"] in _floats(a.noise)
    ]
    rows = aggregate(wanted, a.seeds)
    notes = (
        f"Elastic pendulum, {a.base} base at h = {a.dt}; width {a.hidden}, {a.iterations} iterations, batch "
        f"{a.batch_size}; {a.n_train} training trajectories = fraction 1; noise std in units of the "
        f"per-component state std; {a.n_test} held-out trajectories x {test.shape[0] - 1} steps; seeds "
        f"{a.seeds}. Plain {a.base}: rollout MSE {base_mse:.2g}, blow-up rate {blowup_rate(base):.2f}. "
        "Geometric mean and std of log10 MSE over seeds; Δlog10 MSE is paired within a seed (every arm of a "
        "seed uses that seed); 'lower' counts seeds with lower MSE than NeurVec, 'fewer' seeds with a lower blow-up rate. The blow-up rate is the "
        "fraction of held-out trajectories that become non-finite or diverge, averaged over seeds."
    )
    write_results(
        out,
        a.tag,
        rows,
        title="Data-size and noise sweep: NeurVec vs AttNS (attnkit reconstruction)",
        table=table(rows),
        notes=notes,
        meta={
            "env": env_metadata(num_threads=a.threads),
            "settings": settings,
            "base_mse": base_mse,
            "runs": wanted,
        },
    )
    plot(rows, base_mse, _floats(a.noise), out / f"{a.tag}.png")
    print(table(rows))
    print(notes)


if __name__ == "__main__":
    main()
