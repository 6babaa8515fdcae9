"""How noisy is one proxy-FID value? Real held-out images against the reference statistics, many subsets.

The ScaleLong benchmark scores each evaluation with the proxy FID of 128 samples against a seeded 10,000-image
subset of the training images, and reports one real-vs-real "floor" (128 held-out test images, one subset).
This script draws ``--repeats`` different subsets of ``n`` held-out images for each ``n`` and reports the
spread of their proxy FID: the estimator's own noise at that sample count, with no model involved (for
generated samples the spread is at least this large; arms that share x_T are correlated, which narrows the
spread of their difference).

    python benchmarks/scalelong_fid_noise.py --feature-net benchmarks/results/scalelong_fm28_featurenet.pt

Writes ``benchmarks/results/scalelong_fid_noise.{csv,json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata, markdown_table, write_outputs  # noqa: E402
from scalelong_ddpm import reference_statistics  # noqa: E402

from attnkit.diffusion import (  # noqa: E402
    diffusion_images,
    feature_statistics,
    frechet_distance,
    load_feature_net,
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--feature-net", type=Path, required=True, help="a FeatureNet saved by save_feature_net")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 2048])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--ref-subset", type=int, default=10000, help="reference images (the benchmark's seeded subset)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--stem", default="scalelong_fid_noise")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    net, acc = load_feature_net(a.feature_net)
    x_tr, _ = diffusion_images(a.dataset, "train")
    x_te, _ = diffusion_images(a.dataset, "test")
    ref = reference_statistics(x_tr, net, a.ref_subset)
    rows = []
    for n in a.sizes:
        if n > len(x_te):
            raise SystemExit(f"--sizes {n}: the test split has only {len(x_te)} images")
        vals = []
        for k in range(a.repeats):
            idx = torch.randperm(len(x_te), generator=torch.Generator().manual_seed(1000 * n + k))[:n]
            vals.append(frechet_distance(*feature_statistics(x_te[idx], net), *ref))
        v = np.asarray(vals)
        rows.append(
            dict(
                n_images=n,
                repeats=a.repeats,
                fid_mean=float(v.mean()),
                fid_std=float(v.std(ddof=1)),
                fid_min=float(v.min()),
                fid_median=float(np.median(v)),
                fid_max=float(v.max()),
            )
        )
        print(
            f"n = {n}: proxy FID {v.mean():.2f} ± {v.std(ddof=1):.2f} (min {v.min():.2f}, max {v.max():.2f})"
        )
    env = env_metadata()
    md = (
        f"Real-vs-real proxy FID of {a.dataset} held-out images against {a.ref_subset} training images, "
        f"{a.repeats} random subsets per size; FeatureNet {a.feature_net.name} (test accuracy {acc:.4f}); "
        f"{time.time() - t0:.0f} s on {env['num_threads']} thread, torch {env['torch_version']}.\n\n"
        + markdown_table(
            rows,
            [
                ("images per subset", "n_images", None),
                ("subsets", "repeats", None),
                ("proxy FID mean", "fid_mean", "{:.2f}".format),
                ("std", "fid_std", "{:.2f}".format),
                ("min", "fid_min", "{:.2f}".format),
                ("median", "fid_median", "{:.2f}".format),
                ("max", "fid_max", "{:.2f}".format),
            ],
        )
        + "\n"
    )
    write_outputs(rows, a.stem, md, a.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
