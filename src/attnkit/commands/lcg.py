"""``attnkit lcg fit-generator|train|sample|edit``: latent classifier guidance on the Fashion-MNIST demo generator.

Examples::

    attnkit lcg fit-generator --out runs/lcg/fashion          # conv autoencoder, latents, attributes
    attnkit lcg train --run runs/lcg/fashion                  # latent DDPM + one latent classifier per attribute
    attnkit lcg sample --run runs/lcg/fashion --attr top=1 --attr ink=1 --scale 2
    attnkit lcg edit --run runs/lcg/fashion --image-index 17 --set footwear=1 --then ink=0

Reference:
    Latent classifier guidance, arXiv 2304.12536 (no official code; a reconstruction).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fit-generator``, ``train``, ``sample`` and ``edit`` sub-commands."""
    sub = parser.add_subparsers(dest="lcg_command", required=True)
    f = sub.add_parser("fit-generator", help="train the demo conv autoencoder; encode and label the latents")
    f.add_argument("--out", default="runs/lcg/fashion")
    f.add_argument("--latent-dim", type=int, default=16)
    f.add_argument("--epochs", type=int, default=5)
    f.add_argument("--train-subset", type=int, default=None, help="stratified subset of the 60k images")
    f.add_argument("--data-dir", default=None)
    f.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="train the latent DDPM and the time-dependent latent classifiers")
    t.add_argument("--run", default="runs/lcg/fashion")
    t.add_argument("--ddpm-steps", type=int, default=6000)
    t.add_argument("--clf-steps", type=int, default=2000)
    t.add_argument("--hidden", type=int, default=256)
    t.add_argument("--clf-hidden", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    for name, hlp in (("sample", "compositional generation"), ("edit", "sequential editing of a test image")):
        p = sub.add_parser(name, help=f"{hlp}; writes a PNG grid")
        p.add_argument("--run", default="runs/lcg/fashion")
        p.add_argument("--scale", type=float, default=2.0, help="guidance scale s of the target attributes")
        p.add_argument("--steps", type=int, default=50, help="DDIM steps over the full chain")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default=None, help="PNG file (default <run>/<command>.png)")
    s = sub.choices["sample"]
    s.add_argument("--attr", action="append", default=[], help="NAME=CLASS, repeatable (AND)")
    s.add_argument("--n", type=int, default=16)
    e = sub.choices["edit"]
    e.add_argument("--image-index", type=int, required=True, help="index into the Fashion-MNIST test set")
    e.add_argument("--set", action="append", default=[], help="NAME=CLASS of the first edit, repeatable")
    e.add_argument("--then", action="append", default=[], help="NAME=CLASS[,NAME=CLASS]: one more edit each")
    e.add_argument("--preserve", type=float, default=1.0, help="γ of the preservation term")
    e.add_argument("--t0", type=float, default=0.5)
    e.add_argument("--inversion", default="noise", choices=["noise", "ddim"])


def _parse_attrs(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        for part in item.split(","):
            name, sep, val = part.partition("=")
            if not sep or not name or not val.strip().lstrip("-").isdigit():
                raise ValueError(f"attributes are NAME=CLASS (e.g. top=1), got {part!r}")
            out[name.strip()] = int(val)
    return out


def _images(split: str, subset: int | None, data_dir: str | None, seed: int):
    from ..diffusion import diffusion_images

    x, y = diffusion_images("fashion-mnist", split, subset=subset, seed=seed, data_dir=data_dir)
    return (x + 1) / 2, y  # [0, 1]


def _fit_generator(a) -> int:
    import torch

    from .._io import atomic_torch_save, atomic_write_json
    from ..diffusion.latent_guidance_fashion import (
        AttributeRules,
        encode_images,
        save_generator,
        train_autoencoder,
    )

    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = _images("train", a.train_subset, a.data_dir, a.seed)
    t0 = time.time()
    ae, mse = train_autoencoder(x, latent_dim=a.latent_dim, epochs=a.epochs, seed=a.seed)
    rules = AttributeRules(x)
    z = encode_images(ae, x)
    mean, std = z.mean(0), z.std(0)
    save_generator(
        ae, mean, std, out / "generator.pt", ink_median=rules.ink_median, wide_median=rules.wide_median
    )
    labels = rules.attributes(x, y)
    atomic_torch_save({"latents": (z - mean) / std, "labels": labels}, out / "latents.pt")
    info = dict(vars(a), train_mse=mse, seconds=time.time() - t0, n=len(x), lcg_command="fit-generator")
    atomic_write_json(out / "generator.json", info)
    print(f"generator: {out / 'generator.pt'} (train MSE {mse:.4f}, {len(x)} latents of d={a.latent_dim})")
    return 0


def _train(a) -> int:
    import torch

    from .._io import atomic_write_json, safe_torch_load
    from ..diffusion import DDPMSchedule
    from ..diffusion.latent_guidance import (
        LatentClassifier,
        LatentDenoiser,
        save_latent_guidance,
        train_latent_classifier,
        train_latent_ddpm,
    )

    run = Path(a.run)
    data = safe_torch_load(run / "latents.pt", what="latents (run `attnkit lcg fit-generator` first)")
    z, labels = data["latents"], data["labels"]
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    sched = DDPMSchedule(1000, 1e-4, 0.02)
    t0 = time.time()
    den = LatentDenoiser(z.shape[1], hidden=a.hidden, depth=3, time_dim=64)
    dl = train_latent_ddpm(den, z, sched, a.ddpm_steps, generator=g)
    clfs, cl = {}, {}
    for k, y in labels.items():
        clfs[k] = LatentClassifier(z.shape[1], hidden=a.clf_hidden, depth=2, time_dim=64)
        cl[k] = train_latent_classifier(clfs[k], z, y, sched, a.clf_steps, generator=g)[-1]
    save_latent_guidance(run / "lcg.pt", den.eval(), clfs, sched)
    info = dict(
        vars(a), ddpm_last_loss=dl[-1], clf_last_loss=cl, seconds=time.time() - t0, lcg_command="train"
    )
    atomic_write_json(run / "lcg.json", info)
    print(f"latent models: {run / 'lcg.pt'} (DDPM loss {dl[-1]:.3f}; classifiers {sorted(clfs)})")
    return 0


def _load(run: Path, steps: int):
    from ..diffusion.latent_guidance import load_latent_guidance
    from ..diffusion.latent_guidance_fashion import load_generator

    ae, mean, std, _ = load_generator(run / "generator.pt")
    lcg, _ = load_latent_guidance(run / "lcg.pt", num_inference_steps=steps)
    return ae, mean, std, lcg


def _sample(a) -> int:
    import torch

    from ..diffusion import save_image_grid
    from ..diffusion.latent_guidance_fashion import decode_latents

    run = Path(a.run)
    ae, mean, std, lcg = _load(run, a.steps)
    targets = _parse_attrs(a.attr)
    z = lcg.sample(a.n, targets, scales=a.scale, generator=torch.Generator().manual_seed(a.seed))
    path = save_image_grid(decode_latents(ae, z * std + mean) * 2 - 1, a.out or run / "sample.png", nrow=8)
    print(f"{a.n} samples with {targets or 'no targets'} (s={a.scale}): {path}")
    return 0


def _edit(a) -> int:
    import torch

    from ..diffusion import save_image_grid
    from ..diffusion.latent_guidance_fashion import decode_latents, encode_images

    run = Path(a.run)
    ae, mean, std, lcg = _load(run, a.steps)
    steps = [_parse_attrs(a.set)] + [_parse_attrs([t]) for t in a.then]
    if not steps[0]:
        raise ValueError("--set NAME=CLASS is required (the first edit)")
    x, _ = _images("test", None, None, 0)
    if not 0 <= a.image_index < len(x):
        raise ValueError(f"--image-index must be in 0..{len(x) - 1}, got {a.image_index}")
    src = x[a.image_index : a.image_index + 1]
    z = (encode_images(ae, src) - mean) / std
    outs = lcg.edit_sequence(
        z, steps, scales=a.scale, t0=a.t0, preserve=a.preserve, inversion=a.inversion,
        generator=torch.Generator().manual_seed(a.seed),
    )  # fmt: skip
    row = torch.cat(
        [src, decode_latents(ae, z * std + mean)] + [decode_latents(ae, o * std + mean) for o in outs]
    )
    path = save_image_grid(row * 2 - 1, a.out or run / "edit.png", nrow=len(row))
    print(f"source, reconstruction, then {len(outs)} edits {steps}: {path}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the chosen ``lcg`` sub-command."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cmd = {"fit-generator": _fit_generator, "train": _train, "sample": _sample, "edit": _edit}
    try:
        return cmd[args.lcg_command](args)
    except KeyError as e:  # an unknown attribute name: a user error (one line, exit code 2)
        raise ValueError(e.args[0] if e.args else str(e)) from None
