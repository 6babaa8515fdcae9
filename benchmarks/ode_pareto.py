"""Work-precision (Pareto) plot from ``benchmarks/ode_cost.py`` results: error vs seconds, per configuration.

Usage::

    python benchmarks/ode_pareto.py benchmarks/results/ode_cost_pend.json:1000:eager:float64 \
        benchmarks/results/ode_cost_pend.json:10000:eager:float64 --out docs/figures/ode_pareto.png

Each panel is one configuration (results file, N, eager/compiled, dtype; one thread): every arm's
trajectory MSE against its median time over the interleaved rounds, one line per solver family, the
corrected solver as a star.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from attnkit._io import save_figure  # noqa: E402

STYLE = {
    "corrected": ("*", "black"),
    "rk4": ("o", "tab:blue"),
    "rk8": ("s", "tab:orange"),
    "dopri5": ("^", "tab:green"),
    "torchode": ("v", "tab:red"),
    "scipy_dop853": ("D", "tab:purple"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("panels", nargs="+", help="FILE.json:N:MODE:DTYPE[:THREADS]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cols", type=int, default=2)
    a = ap.parse_args()
    rows = math.ceil(len(a.panels) / a.cols)
    fig, axes = plt.subplots(rows, a.cols, figsize=(5.2 * a.cols, 3.9 * rows), squeeze=False)
    for ax, spec in zip(axes.flat, a.panels):
        path, n, mode, dtype, *rest = spec.split(":")
        threads = int(rest[0]) if rest else 1
        res = json.load(open(path))
        arms = [
            r
            for r in res["arms"]
            if r["n"] == int(n) and r["mode"] == mode and r["dtype"] == dtype and r["threads"] == threads
        ]
        for fam, (mk, col) in STYLE.items():
            # joined in order of setting (error falling), so timing noise shows as a zigzag, not hidden
            pts = [(r["median_s"], r["mse"]) for r in arms if r["family"] == fam and r["mse"] > 0]
            pts.sort(key=lambda p: -p[1])
            if not pts:
                continue
            ax.plot(
                *zip(*pts),
                marker=mk,
                color=col,
                ms=11 if fam == "corrected" else 5,
                ls="none" if fam == "corrected" else "-",
                label=fam.replace("_", " "),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # labels at 1-2-5 in every decade: a panel spanning less than a decade still has numbers
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("median seconds (interleaved rounds)")
        ax.set_ylabel("trajectory MSE")
        ax.set_title(f"{res['system']}, N = {int(n):,}, {mode}, {dtype}, {threads} thread(s)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(a.panels) :]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, Path(a.out), dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
