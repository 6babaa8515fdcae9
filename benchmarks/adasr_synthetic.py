"""ADASR on synthetic scenes: four augmentation arms × two supervision modes, 5 seeds, paired against none.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/adasr_synthetic.py            # the CPU-scale run (docs/tasks.md)
    python benchmarks/adasr_synthetic.py --seeds 1 --stage1 50 --stage2 50   # a quick look

Per seed: one synthetic scene (``synthetic_scene(size, seed=seed)``, 46 bands, s = 4, Gaussian SRF with
8 bands), then every (supervision, arm) pair is fitted on it in turn (interleaved, same seed), so the
arms are paired. Arms: (a) no augmentation (UDALN-style), (b) random rotation θ ~ U(−π, π), (c) learned
augmentor, cooperative objective (the official code), (d) learned augmentor, adversarial (the paper).
Reported: PSNR, SAM, ERGAS, CC, RMSE of X̂ = U(Z) at the end of training (a single-scene unsupervised fit
has no validation split, so "best" would need the ground truth and is not reported), PSF error
‖PSF − PSF_true‖₁ and SRF error ‖R − R_true‖₁; mean ± std over seeds and paired differences vs (a).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata, write_outputs  # noqa: E402

from attnkit._io import atomic_write_text, save_figure  # noqa: E402
from attnkit.data.hsi import gaussian_srf, simulate_pair, srf_supports, synthetic_scene  # noqa: E402
from attnkit.tasks.adasr import ADASRConfig, fit_adasr, hsi_metrics  # noqa: E402

ARMS = {
    "none": {"augment": "none"},
    "random": {"augment": "random"},
    "learned_coop": {"augment": "learned", "augment_objective": "cooperative"},
    "learned_adv": {"augment": "learned", "augment_objective": "adversarial"},
}
METRICS = ["psnr", "sam_deg", "ergas", "cc", "rmse", "psf_err", "srf_err"]
HIGHER_BETTER = {"psnr", "cc"}


def _ms(v: list[float]) -> str:
    if not v:
        return "—"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.4g} ± {sd:.2g}"


def run_one(x, pair, sup, arm, seed, a) -> dict:
    cfg = ADASRConfig(
        stage1_iters=a.stage1,
        stage1_decay_from=a.stage1 // 3,
        stage2_iters=a.stage2,
        stage2_decay_from=a.stage2 // 3,
        supervision=sup,
        augmentor_widths=tuple(int(w) for w in a.widths.split(",")),
        seed=seed,
        **ARMS[arm],
    )
    t0 = time.perf_counter()
    res = fit_adasr(
        pair["Y"],
        pair["Z"],
        srf_supports(pair["srf"]),
        a.scale,
        cfg,
        targets=(pair["M_Y"], pair["M_Z"]),
        log_every=0,
    )
    row = {"seed": seed, "supervision": sup, "arm": arm, "seconds": time.perf_counter() - t0}
    row.update(hsi_metrics(x, res.x_hat, a.scale))
    row["psf_err"] = float((res.psf - pair["psf"]).abs().sum())
    row["srf_err"] = float((res.srf - pair["srf"]).abs().sum())
    return row


def summarise(rows: list[dict], seeds: list[int]) -> tuple[str, list[dict]]:
    lines, summary = [], []
    for sup in ("simulated", "blind"):
        lines += [f"\n**supervision = {sup}** (mean ± std over {len(seeds)} seeds)\n"]
        lines += ["| arm | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        base = {r["seed"]: r for r in rows if r["supervision"] == sup and r["arm"] == "none"}
        diffs = []
        for arm in ARMS:
            rs = [r for r in rows if r["supervision"] == sup and r["arm"] == arm]
            lines.append(f"| {arm} | " + " | ".join(_ms([r[m] for r in rs]) for m in METRICS) + " |")
            if arm == "none":
                continue
            d = {m: [r[m] - base[r["seed"]][m] for r in rs if r["seed"] in base] for m in METRICS}
            wins = sum(v > 0 for v in d["psnr"])  # seeds on which the arm's PSNR beats (a)'s
            diffs.append((arm, d, wins))
            summary.append(
                {"supervision": sup, "arm": arm, **{f"d_{m}": statistics.mean(v) for m, v in d.items() if v}}
            )
        lines += [
            f"\nPaired differences vs none ({sup}): arm − none, mean ± std; PSNR wins = seeds improved\n"
        ]
        lines += [
            "| arm | " + " | ".join(f"Δ{m}" for m in METRICS) + " | PSNR wins |",
            "|---" * (len(METRICS) + 2) + "|",
        ]
        for arm, d, wins in diffs:
            lines.append(
                f"| {arm} | " + " | ".join(_ms(d[m]) for m in METRICS) + f" | {wins}/{len(d['psnr'])} |"
            )
    return "\n".join(lines), summary


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for k, sup in enumerate(("simulated", "blind")):
        means, sds = [], []
        for arm in ARMS:
            v = [r["psnr"] for r in rows if r["supervision"] == sup and r["arm"] == arm]
            means.append(statistics.mean(v))
            sds.append(statistics.stdev(v) if len(v) > 1 else 0.0)
        xs = [i + (k - 0.5) * width for i in range(len(ARMS))]
        ax.bar(xs, means, width, yerr=sds, capsize=3, label=sup)
    ax.set_xticks(range(len(ARMS)), list(ARMS))
    ax.set_ylabel("PSNR of X̂ (dB)")
    ax.set_title("ADASR, synthetic scene: augmentation arms (mean ± std over seeds)")
    ax.legend()
    lo = min(r["psnr"] for r in rows)
    ax.set_ylim(lo - 2, None)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--size", type=int, default=80, help="scene side (pixels); Y is size/scale")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--stage1", type=int, default=300)
    ap.add_argument("--stage2", type=int, default=500)
    ap.add_argument("--widths", default="16,16,32,32,64,64,128,128", help="augmentor conv widths")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--stem", default="adasr_synthetic")
    a = ap.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(a.seeds))
    rows: list[dict] = []
    t_start = time.perf_counter()
    for seed in seeds:
        x = synthetic_scene(a.size, seed=seed)
        srf = gaussian_srf(x.shape[0], 8, sigma=3.0)
        pair = simulate_pair(x, a.scale, srf)
        for sup in ("simulated", "blind"):
            for arm in ARMS:
                rows.append(run_one(x, pair, sup, arm, seed, a))
                r = rows[-1]
                print(
                    f"seed {seed} {sup:9s} {arm:12s} PSNR {r['psnr']:.2f} SAM {r['sam_deg']:.3f} "
                    f"PSF {r['psf_err']:.4f} SRF {r['srf_err']:.4f} ({r['seconds']:.1f}s)",
                    flush=True,
                )
    wall = time.perf_counter() - t_start
    table, summary = summarise(rows, seeds)
    budget = (
        f"Budget: {a.seeds} seeds × 2 supervision × 4 arms, scene {a.size}×{a.size}×46, s = {a.scale}, "
        f"stage 1 {a.stage1} iterations (decay from {a.stage1 // 3}), stage 2 {a.stage2} (decay from "
        f"{a.stage2 // 3}), augmentor widths {a.widths}; one thread on a shared 2-core machine (its load varied over the day); "
        f"wall {wall / 60:.1f} min."
    )
    md = "# ADASR synthetic benchmark\n\n" + budget + "\n" + table + "\n"
    out = Path(a.out)
    write_outputs(rows, a.stem, md, out)
    plot(rows, out / f"{a.stem}.png")
    atomic_write_text(
        out / f"{a.stem}_meta.json", json.dumps({"env": env_metadata(), "summary": summary}, indent=1)
    )
    print(md)


if __name__ == "__main__":
    main()
