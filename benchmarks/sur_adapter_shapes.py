"""SUR-adapter on the SURD-mini CPU demo: does the adapter move simple prompts toward complex ones?

Arms, side by side in one run (one frozen toy UNet trained on the complex prompts, stage A):
  * ``simple``: the simple prompts' MiniLM states, no adapter;
  * ``official``: an adapter trained with the official code's flags (batch_first=False, detached
    diffusion loss, KL(student ‖ teacher));
  * ``fixed``: attnkit's fixes (batch_first=True, diffusion gradient on);
  * ``complex``: the complex prompts' states (the ceiling).

Per arm and seed: count / colour / layout accuracy of DDIM samples (one per scene and sample index)
read by :func:`attnkit.data.surd.parse_image`; held-out denoising MSE (fixed t and noise, the same for
every arm); and the mean per-token cosine of the conditioning to the complex-prompt states.
Writes ``sur_adapter_shapes.{json,csv,md}`` and a sample grid (simple | with adapter | complex).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/sur_adapter_shapes.py --pretrain-steps 3000 --steps 400 --seeds 0 1 2
    python benchmarks/sur_adapter_shapes.py --quick          # a plumbing check, not a result
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata  # noqa: E402

from attnkit._io import write_results  # noqa: E402
from attnkit.data.surd import all_scenes, parse_image, surd_mini, surd_prompts  # noqa: E402
from attnkit.diffusion import save_image_grid  # noqa: E402
from attnkit.generative.sur_pipeline import adapt_prompt_embeds  # noqa: E402
from attnkit.generative.sur_train import SURTrainConfig, train_sur_adapter  # noqa: E402

ARMS = ("simple", "official", "fixed", "complex")


@torch.no_grad()
def ddim_sample(unet, ctx, steps, guidance, empty, generator):
    """DDIM samples (B, 3, 16, 16) conditioned on ctx (B, T, d), optional CFG against the empty prompt."""
    import diffusers

    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, clip_sample=True, timestep_spacing="trailing")
    sch.set_timesteps(steps)
    x = torch.randn(ctx.shape[0], 3, 16, 16, generator=generator)
    for t in sch.timesteps:
        tt = torch.full((x.shape[0],), int(t))
        eps = unet(x, tt, encoder_hidden_states=ctx).sample
        if guidance > 1.0:
            eps_u = unet(x, tt, encoder_hidden_states=empty.expand_as(ctx)).sample
            eps = eps_u + guidance * (eps - eps_u)
        x = sch.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def accuracy(images, scenes):
    """Count / colour / layout accuracy of parsed images against their scenes (layout: counts ≥ 2)."""
    ok = {"count": 0, "color": 0, "layout": 0}
    n_layout = 0
    for img, (count, color, _, layout) in zip(images, scenes):
        got = parse_image(img)
        ok["count"] += got["count"] == count
        ok["color"] += got["color"] == color
        if count > 1:
            n_layout += 1
            ok["layout"] += got["layout"] == layout
    return {
        "count_acc": ok["count"] / len(scenes),
        "color_acc": ok["color"] / len(scenes),
        "layout_acc": ok["layout"] / max(n_layout, 1),
    }


@torch.no_grad()
def heldout_mse(unet, ctx, held, seed=0):
    """ε-MSE on held-out images with fixed (t, ε), conditioned on ctx (B, T, d)."""
    import diffusers

    sch = diffusers.DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.stack([d["image"] for d in held])
    t = torch.randint(0, 1000, (len(held),), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    pred = unet(sch.add_noise(x0, noise, t), t, encoder_hidden_states=ctx).sample
    return float(torch.nn.functional.mse_loss(pred, noise))


def cosine(a, b):
    """Mean per-token cosine of two (B, T, d) state tensors."""
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


def run(args):
    out_dir = Path(args.out)
    scenes = all_scenes()
    simple = [surd_prompts(*s)[0] for s in scenes]
    complex_ = [surd_prompts(*s)[1] for s in scenes]
    held = surd_mini(args.n_heldout, seed=999)
    held_idx = [simple.index(d["simple"]) for d in held]  # each held-out image's scene
    rows, grids = [], {}
    base = dict(
        out_dir=str(out_dir / "run"),
        pretrain_steps=args.pretrain_steps,
        steps=args.steps,
        n_train=args.n_train,
        batch_size=args.batch_size,
        lr=args.lr,
        threads=args.threads,
        teacher=args.teacher,
    )
    for seed in args.seeds:
        trained = {}
        for arm in ("official", "fixed"):
            cfg = (
                SURTrainConfig.official(**base, seed=seed)
                if arm == "official"
                else SURTrainConfig(**base, seed=seed)
            )
            t0 = time.time()
            res = train_sur_adapter(cfg)
            trained[arm] = res["adapter"]
            unet, states = res["unet"], res["states"]
            print(
                f"seed {seed} {arm}: trained in {time.time() - t0:.0f}s, loss "
                f"{res['losses'][0]['total']:.4f} -> {res['losses'][-1]['total']:.4f}",
                flush=True,
            )
        s_ctx = torch.stack([states[p] for p in simple])  # (S, T, 384)
        c_ctx = torch.stack([states[p] for p in complex_])
        empty = states[""][None]
        ctx = {"simple": s_ctx, "complex": c_ctx}
        for arm in ("official", "fixed"):
            ctx[arm] = adapt_prompt_embeds(trained[arm], s_ctx)
        for arm in ARMS:
            rep = ctx[arm].repeat(args.samples_per_scene, 1, 1)
            g = torch.Generator().manual_seed(10_000 + seed)  # the same x_T for every arm
            imgs = ddim_sample(unet, rep, args.ddim_steps, args.guidance, empty, g)
            acc = accuracy(imgs, scenes * args.samples_per_scene)

            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    **acc,
                    "heldout_mse": heldout_mse(unet, ctx[arm][held_idx], held),
                    "cos_to_complex": cosine(ctx[arm], c_ctx),
                }
            )
            print(rows[-1], flush=True)
            if seed == args.seeds[0]:
                grids[arm] = imgs[: args.grid_rows]
    table_rows = []
    for arm in ARMS:
        rs = [r for r in rows if r["arm"] == arm]
        agg = {"arm": arm, "seeds": len(rs)}
        for k in ("count_acc", "color_acc", "layout_acc", "heldout_mse", "cos_to_complex"):
            v = torch.tensor([r[k] for r in rs])
            agg[k] = float(v.mean())
            agg[k + "_std"] = float(v.std()) if len(rs) > 1 else 0.0
        table_rows.append(agg)
    fig = Path(args.figure)
    grid = torch.stack([grids["simple"], grids["fixed"], grids["complex"]], 1).flatten(0, 1)  # rows of 3
    save_image_grid(grid, fig, nrow=3)
    notes = (
        f"{len(args.seeds)} seed(s); stage A {args.pretrain_steps} steps, adapter {args.steps} steps "
        f"(batch {args.batch_size}); DDIM-{args.ddim_steps}, guidance {args.guidance}; "
        f"{len(scenes)} scenes x {args.samples_per_scene} samples; held-out MSE on {args.n_heldout} images."
    )
    write_results(
        out_dir,
        "sur_adapter_shapes",
        table_rows,
        title="SUR-adapter on SURD-mini",
        notes=notes,
        meta={"env": env_metadata(num_threads=args.threads), "per_seed": rows},
    )
    print(notes)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(RESULTS_DIR / "sur_adapter_shapes"))
    p.add_argument(
        "--figure", default=str(Path(__file__).resolve().parents[1] / "docs/figures/sur_adapter_grid.png")
    )
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--samples-per-scene", type=int, default=1)
    p.add_argument("--n-heldout", type=int, default=256)
    p.add_argument("--grid-rows", type=int, default=12)
    p.add_argument("--teacher", default="smollm2", choices=["smollm2", "none"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, measures nothing")
    args = p.parse_args()
    if args.quick:
        args.pretrain_steps, args.steps, args.n_train, args.seeds = 2, 2, 32, [0]
        args.ddim_steps, args.n_heldout, args.grid_rows = 2, 8, 4
        args.out = str(Path(args.out).with_name("sur_adapter_shapes_quick"))
        args.figure = str(Path(args.out) / "grid.png")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(args)


if __name__ == "__main__":
    main()
