r"""``attnkit adasr fit``: ADASR HSI–MSI fusion on one scene (a ``.mat`` reference cube or a synthetic one).

Examples::

    attnkit adasr fit --scene synthetic --scale 4 --stage1 4000 --stage2 20000 --out runs/adasr/synth
    attnkit adasr fit --scene data/houston18/REF.mat --key REF --srf houston18_srf.npy --scale 5 \\
        --stage1 40000 --stage2 200000 --out runs/adasr/houston18

The reference cube is degraded by the ADASR simulator (Gaussian PSF with FWHM = s, the SRF), fused,
and compared with the reference. Writes ``fused.mat`` (variable ``OUT``, H×W×L like the official
``My_Out.mat``), ``metrics.json``, ``history.csv`` and ``false_color.png`` (reference | fused | |error|).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fit`` sub-command."""
    sub = parser.add_subparsers(dest="adasr_command", required=True)
    f = sub.add_parser("fit", help="fuse one scene; writes the fused cube, metrics and false-colour PNGs")
    f.add_argument("--scene", required=True, help="a .mat file holding an H×W×L cube, or 'synthetic'")
    f.add_argument("--key", default="REF", help="the .mat variable (REF in the official repository)")
    f.add_argument("--scale", type=int, default=4)
    f.add_argument(
        "--srf", default=None, help="an (L, M) response as .npy or .csv (default: 8 Gaussian bands)"
    )
    f.add_argument("--size", type=int, default=120, help="synthetic scene side in pixels")
    f.add_argument("--stage1", type=int, default=4000, help="stage-1 iterations (official 40000)")
    f.add_argument("--stage2", type=int, default=20000, help="stage-2 iterations (official 200000)")
    f.add_argument("--augment", default="learned", choices=["learned", "random", "none"])
    f.add_argument("--objective", default="adversarial", choices=["adversarial", "cooperative"])
    f.add_argument("--supervision", default="blind", choices=["blind", "simulated"])
    f.add_argument("--seed", type=int, default=2)
    f.add_argument("--threads", type=int, default=None)
    f.add_argument("--out", default="runs/adasr/run")


def _load_srf(path: str, bands: int):
    import numpy as np
    import torch

    arr = np.load(path) if path.endswith(".npy") else np.loadtxt(path, delimiter=",")
    srf = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    if srf.dim() != 2 or srf.shape[0] != bands:
        raise ValueError(f"--srf must hold an (L={bands}, M) array, got {tuple(srf.shape)}")
    return srf / srf.sum(0, keepdim=True).clamp_min(1e-12)


def _false_color(x, bands):
    import numpy as np

    img = np.stack([x[b] for b in bands], -1)  # (H, W, 3)
    lo, hi = np.percentile(img, 1), np.percentile(img, 99)
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)


def _write_png(path: Path, ref, fused) -> None:
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    from attnkit._io import save_figure

    bands = [int(ref.shape[0] * f) for f in (0.8, 0.5, 0.2)]
    err = np.abs(fused - ref).mean(0)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 3)
    for ax, img, title in zip(
        axes, [_false_color(ref, bands), _false_color(fused, bands)], ["reference", "fused"]
    ):
        ax.imshow(img)
        ax.set_title(f"{title} (bands {bands})")
    im = axes[2].imshow(err, cmap="magma")
    axes[2].set_title("mean |error| over bands")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _fit(a: argparse.Namespace) -> int:
    import numpy as np
    import scipy.io
    import torch

    from attnkit._io import atomic_write_csv, atomic_write_text, commit_file
    from attnkit.data.hsi import gaussian_srf, load_mat_scene, simulate_pair, srf_supports, synthetic_scene
    from attnkit.tasks.adasr import ADASRConfig, fit_adasr, hsi_metrics

    if a.threads:
        torch.set_num_threads(a.threads)
    x = synthetic_scene(a.size, seed=a.seed) if a.scene == "synthetic" else load_mat_scene(a.scene, key=a.key)
    h, w = (x.shape[1] // a.scale) * a.scale, (x.shape[2] // a.scale) * a.scale
    x = x[:, :h, :w]  # crop to a multiple of the scale
    srf = _load_srf(a.srf, x.shape[0]) if a.srf else gaussian_srf(x.shape[0], 8)
    pair = simulate_pair(x, a.scale, srf)
    cfg = ADASRConfig(
        stage1_iters=a.stage1,
        stage1_decay_from=a.stage1 // 4,
        stage2_iters=a.stage2,
        stage2_decay_from=a.stage2 // 10,
        augment=a.augment,
        augment_objective=a.objective,
        supervision=a.supervision,
        seed=a.seed,
    )
    res = fit_adasr(pair["Y"], pair["Z"], srf_supports(srf), a.scale, cfg, targets=(pair["M_Y"], pair["M_Z"]))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fused = res.x_hat[0].numpy()  # (L, H, W)
    metrics = hsi_metrics(x, res.x_hat, a.scale)
    metrics["psf_err_l1"] = float((res.psf - pair["psf"]).abs().sum())
    metrics["srf_err_l1"] = float((res.srf - pair["srf"]).abs().sum())
    mat = {"OUT": np.ascontiguousarray(fused.transpose(1, 2, 0))}
    commit_file(out / "fused.mat", lambda tmp: scipy.io.savemat(tmp, mat, appendmat=False))
    atomic_write_text(out / "metrics.json", json.dumps({"config": vars(a), "metrics": metrics}, indent=1))
    if res.history:
        atomic_write_csv(out / "history.csv", list(res.history[0]), res.history)
    _write_png(out / "false_color.png", x.numpy(), fused)
    print(json.dumps(metrics, indent=1))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``attnkit adasr fit``; returns the exit code."""
    return _fit(args)
