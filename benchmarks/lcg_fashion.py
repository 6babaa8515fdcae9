"""Latent classifier guidance on a Fashion-MNIST conv autoencoder: compositional generation and editing.

Trains (once, seed 0) the demo generator (conv autoencoder), a held-out image CNN evaluator (FeatureNet,
also the proxy-FID feature network), a latent DDPM and four time-dependent latent classifiers; then, for
5 seeds (sampling noise and the edited images), measures every arm on DECODED images.

    OMP_NUM_THREADS=1 python benchmarks/lcg_fashion.py            # ~35 min on one thread of a loaded 2-core machine
    OMP_NUM_THREADS=1 python benchmarks/lcg_fashion.py --quick    # smoke run

Writes benchmarks/results/lcg_fashion.{json,md} and lcg_fashion_edits.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, env_metadata  # noqa: E402

from attnkit._io import atomic_write_json, atomic_write_text, save_figure  # noqa: E402
from attnkit.diffusion import (  # noqa: E402  # noqa: E402
    DDPMSchedule,
    diffusion_images,
    feature_statistics,
    proxy_fid,
    train_feature_net,
)
from attnkit.diffusion.latent_guidance import (  # noqa: E402
    LatentClassifier,
    LatentClassifierGuidance,
    LatentDenoiser,
    arithmetic_betas,
    fit_linear_probes,
    linear_arithmetic_edit,
    train_latent_classifier,
    train_latent_ddpm,
)
from attnkit.diffusion.latent_guidance_fashion import (  # noqa: E402
    ATTRIBUTES,
    AttributeRules,
    decode_latents,
    encode_images,
    to_evaluator_input,
    train_autoencoder,
)

GEN_TARGETS = {
    "top": {"top": 1},
    "footwear": {"footwear": 1},
    "ink": {"ink": 1},
    "top+ink": {"top": 1, "ink": 1},
    "footwear+wide=0": {"footwear": 1, "wide": 0},
    "top+ink=0+wide": {"top": 1, "ink": 0, "wide": 1},
}
GEN_SCALES = (1.0, 2.0, 4.0)
EDIT_ARMS = (
    "arithmetic",
    "lcg_nopres",
    "lcg_keep",
    "lcg_keep_ddim",
    "lcg_g0.02",
    "lcg_g0.1",
    "lcg_g0.5",
    "lcg_g1",
    "lcg_g2",
    "lcg_g1_ddim",
)
FIG_ARMS = ("lcg_keep", "lcg_g0.1", "arithmetic")
EDIT_SCALE = 2.0  # fixed before the run for every LCG edit arm


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Judge:
    """Held-out evaluator on decoded [0, 1] images: CNN classes for top/footwear, pixel rules for ink/wide."""

    def __init__(self, cnn, rules):
        self.cnn, self.rules = cnn, rules

    @torch.no_grad()
    def __call__(self, images):
        x = to_evaluator_input(images)
        cls = torch.cat([self.cnn(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])
        return self.rules.attributes(images, cls)


def build(a):
    log("data")
    x_tr, y_tr = diffusion_images("fashion-mnist", "train", subset=a.n_train, seed=0)
    x_te, y_te = diffusion_images("fashion-mnist", "test")
    x_tr, x_te = (x_tr + 1) / 2, (x_te + 1) / 2  # [0, 1]
    log("autoencoder")
    ae, mse = train_autoencoder(x_tr, latent_dim=a.dim, epochs=a.ae_epochs)
    log(f"  AE train MSE {mse:.4f}; evaluator CNN")
    n_cnn = min(a.n_cnn, len(x_tr))
    cnn, acc = train_feature_net(
        to_evaluator_input(x_tr[:n_cnn]), y_tr[:n_cnn], to_evaluator_input(x_te[:2000]), y_te[:2000],
        epochs=a.cnn_epochs, seed=1,
    )  # fmt: skip
    log(f"  evaluator 10-class test acc {acc:.3f}")
    rules = AttributeRules(x_tr)
    z_raw = encode_images(ae, x_tr)
    mean, std = z_raw.mean(0), z_raw.std(0)
    z = (z_raw - mean) / std
    labels = rules.attributes(x_tr, y_tr)
    sched = DDPMSchedule(1000, 1e-4, 0.02)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    den = LatentDenoiser(a.dim, hidden=a.hidden, depth=3, time_dim=64)
    log("latent DDPM")
    dl = train_latent_ddpm(den, z, sched, a.ddpm_steps, batch_size=256, lr=1e-3, generator=g)
    den.eval()
    clfs, clf_loss = {}, {}
    for k in ATTRIBUTES:
        log(f"latent classifier {k}")
        clfs[k] = LatentClassifier(a.dim, hidden=128, depth=2, time_dim=64)
        cl = train_latent_classifier(clfs[k], z, labels[k], sched, a.clf_steps, generator=g)
        clf_loss[k] = sum(cl[-100:]) / len(cl[-100:])
    probes = fit_linear_probes(z, labels)
    fid_ref = feature_statistics(to_evaluator_input(x_te[:2000]), cnn)
    z_te_norm = float(((encode_images(ae, x_te[:2000]) - mean) / std).norm(dim=1).mean())
    recon_judge = Judge(cnn, rules)(decode_latents(ae, z_raw[:2000]))
    recon_agree = {k: float((recon_judge[k] == labels[k][:2000]).float().mean()) for k in ATTRIBUTES}
    info = dict(
        ae_mse=mse, evaluator_acc=acc, ddpm_loss_last100=sum(dl[-100:]) / 100, clf_loss_last100=clf_loss,
        recon_attribute_agreement=recon_agree, test_latent_norm=z_te_norm,
    )  # fmt: skip
    log(f"  {info}")
    return dict(ae=ae, mean=mean, std=std, den=den, clfs=clfs, sched=sched, probes=probes, cnn=cnn,
                judge=Judge(cnn, rules), fid_ref=fid_ref, z_te_norm=z_te_norm, x_te=x_te, y_te=y_te, info=info)  # fmt: skip


def decode(m, z):
    return decode_latents(m["ae"], z * m["std"] + m["mean"])


def all_hold(attrs, targets):
    ok = torch.ones_like(next(iter(attrs.values())), dtype=torch.bool)
    for k, v in targets.items():
        ok &= attrs[k] == (v if not torch.is_tensor(v) else v)
    return ok


def arithmetic(m, z, targets):
    """Arithmetic to linear probability 0.9 for every target (targets: name -> int or (B,) tensor)."""
    dirs, betas = {}, {}
    for k, v in targets.items():
        w, b = m["probes"][k]
        dirs[k] = w / w.norm()
        vv = v if torch.is_tensor(v) else torch.full((len(z),), int(v))
        beta = torch.zeros(len(z), dtype=torch.float64)
        for c in (0, 1):
            sel = vv == c
            if sel.any():
                beta[sel] = arithmetic_betas(z[sel].double(), (w, b), c)
        betas[k] = beta.float()
    return linear_arithmetic_edit(z, dirs, betas)


def generation(m, lcg, a, seed):
    rows = []
    g = torch.Generator().manual_seed(1000 + seed)
    z0 = torch.randn(a.n_gen, a.dim, generator=g)
    unguided = lcg.sample(a.n_gen, {}, x_T=z0)
    arms = {"unguided": unguided}
    for name, tg in GEN_TARGETS.items():
        arms_t = dict(arms)
        for s in GEN_SCALES:
            arms_t[f"lcg_s{s:g}"] = lcg.sample(a.n_gen, tg, scales=s, x_T=z0)
        arms_t["arithmetic_N01"] = arithmetic(m, z0, tg)
        for arm, z in arms_t.items():
            imgs = decode(m, z)
            acc = float(all_hold(m["judge"](imgs), tg).float().mean())
            fid = proxy_fid(to_evaluator_input(imgs), m["fid_ref"], m["cnn"])
            znorm = float(z.norm(dim=1).mean())
            rows.append(dict(seed=seed, target=name, arm=arm, acc=acc, fid=fid, z_norm=znorm))
    return rows


def edit_arm(m, lcg, arm, z, targets, seed):
    """targets: name -> (B,) tensor; edits in groups of equal targets."""
    if arm == "arithmetic":
        return arithmetic(m, z, targets)
    kw = dict(scales=EDIT_SCALE, t0=0.5)
    if arm == "lcg_nopres":
        kw.update(preserve=0.0, keep=[])
    elif arm.startswith("lcg_keep"):  # keep classifiers only, no Gaussian preservation term
        kw.update(preserve=0.0, inversion="ddim" if arm.endswith("ddim") else "noise")
    else:
        gamma = float(arm.split("_g")[1].split("_")[0])
        kw.update(preserve=gamma, inversion="ddim" if arm.endswith("ddim") else "noise")
    out = torch.empty_like(z)
    keys = torch.stack([targets[k] for k in targets], 1)  # (B, K)
    for combo in keys.unique(dim=0):
        sel = (keys == combo).all(1)
        tg = {k: int(c) for k, c in zip(targets, combo, strict=True)}
        gen = torch.Generator().manual_seed(2000 + seed)
        out[sel] = lcg.edit(z[sel], tg, generator=gen, **kw)
    return out


def editing(m, lcg, a, seed):
    g = torch.Generator().manual_seed(3000 + seed)
    x_te = m["x_te"]
    pool = torch.randperm(len(x_te), generator=g)[: 4 * a.n_edit]
    z_pool = (encode_images(m["ae"], x_te[pool]) - m["mean"]) / m["std"]
    src = m["judge"](decode(m, z_pool))
    keep_idx = (src["top"] ^ src["footwear"]).bool().nonzero()[:, 0][: a.n_edit]
    z_src = z_pool[keep_idx]
    s = {k: v[keep_idx] for k, v in src.items()}
    edits = {
        "flip ink": {"ink": 1 - s["ink"]},
        "flip wide": {"wide": 1 - s["wide"]},
        "top<->footwear": {"top": 1 - s["top"], "footwear": 1 - s["footwear"]},
    }
    x_src = decode(m, z_src)
    rows, seq_out = [], {}
    for arm in EDIT_ARMS:
        for ename, tg in edits.items():
            z = edit_arm(m, lcg, arm, z_src, tg, seed)
            rows.append(measure(m, dict(seed=seed, arm=arm, edit=ename), z, z_src, x_src, s, tg))
        z, done = z_src, {}
        seq = [edits["top<->footwear"], edits["flip ink"], edits["flip wide"]]
        outs = []
        for k, tg in enumerate(seq, 1):
            z = edit_arm(m, lcg, arm, z, tg, seed)
            outs.append(z)
            done.update(tg)
            rows.append(
                measure(m, dict(seed=seed, arm=arm, edit=f"sequential {k}/3"), z, z_src, x_src, s, done)
            )
        seq_out[arm] = outs
    return rows, (z_src, seq_out)


def measure(m, row, z, z_src, x_src, s, targets):
    imgs = decode(m, z)
    att = m["judge"](imgs)
    others = [k for k in ATTRIBUTES if k not in targets]
    pres = float(torch.stack([(att[k] == s[k]).float() for k in others]).mean()) if others else float("nan")
    row.update(
        success=float(all_hold(att, targets).float().mean()),
        preservation=pres,
        pixel_mse=float(((imgs - x_src) ** 2).mean()),
        latent_l2=float((z - z_src).norm(dim=1).mean()),
    )
    return row


def summarise(rows, keys, metrics):
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        d = dict(zip(keys, key, strict=True))
        for mname in metrics:
            v = torch.tensor([r[mname] for r in rs], dtype=torch.float64)
            d[mname] = (float(v.mean()), float(v.std()) if len(v) > 1 else 0.0)
        out.append(d)
    return out


def md_table(summary, keys, metrics):
    head = "| " + " | ".join(keys + metrics) + " |\n|" + "---|" * (len(keys) + len(metrics)) + "\n"
    lines = []
    for d in summary:
        cells = [str(d[k]) for k in keys]
        for mname in metrics:
            mu, sd = d[mname]
            cells.append("—" if mu != mu else f"{mu:.3f} ± {sd:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def edit_figure(m, z_src, seq, path, n=6):
    """Labelled grid: one panel per arm in FIG_ARMS; rows are source items, columns the sequential edits."""
    from matplotlib.figure import Figure

    cols = ["source", "top<->footwear", "+ flip ink", "+ flip wide"]
    n = min(n, len(z_src))
    fig = Figure(figsize=(0.95 * len(cols) * len(FIG_ARMS), 1.0 * n + 0.6), dpi=110)
    sub = fig.subfigures(1, len(FIG_ARMS), wspace=0.04)
    src = decode(m, z_src[:n])
    for sf, arm in zip(sub, FIG_ARMS, strict=True):
        sf.suptitle(arm, fontsize=10)
        ax = sf.subplots(n, len(cols))
        panels = [src] + [decode(m, z[:n]) for z in seq[arm]]
        for j, imgs in enumerate(panels):
            for i in range(n):
                a = ax[i, j]
                a.imshow(imgs[i, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
                a.set_xticks([])
                a.set_yticks([])
                if i == 0:
                    a.set_title(cols[j], fontsize=7)
    save_figure(fig, path, dpi=fig.dpi)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS_DIR))
    a = p.parse_args()
    torch.set_num_threads(1)
    big = not a.quick
    a.dim, a.hidden = 16, 256 if big else 64
    a.n_train, a.ae_epochs, a.n_cnn, a.cnn_epochs = (30000, 5, 15000, 3) if big else (3000, 1, 2000, 1)
    a.ddpm_steps, a.clf_steps = (10000, 2500) if big else (200, 100)
    a.n_gen, a.n_edit = (200, 150) if big else (32, 16)
    a.seeds = a.seeds if big else 1
    t_start = time.time()
    m = build(a)
    lcg = LatentClassifierGuidance(m["den"], m["clfs"], m["sched"], num_inference_steps=50)
    gen_rows, edit_rows, fig = [], [], None
    for seed in range(a.seeds):
        log(f"seed {seed}: generation")
        gen_rows += generation(m, lcg, a, seed)
        log(f"seed {seed}: editing")
        rows, f = editing(m, lcg, a, seed)
        edit_rows += rows
        fig = fig or f
    gs = summarise(gen_rows, ["target", "arm"], ["acc", "fid", "z_norm"])
    es = summarise(edit_rows, ["edit", "arm"], ["success", "preservation", "pixel_mse", "latent_l2"])
    out = Path(a.out)
    edit_figure(m, *fig, out / "lcg_fashion_edits.png")
    wall = time.time() - t_start
    budget = {k: getattr(a, k) for k in ("dim", "hidden", "n_train", "ae_epochs", "n_cnn", "cnn_epochs",
                                          "ddpm_steps", "clf_steps", "n_gen", "n_edit", "seeds")}  # fmt: skip
    res = dict(env=env_metadata(num_threads=1), budget=budget, wall_s=wall, info=m["info"], edit_scale=EDIT_SCALE,
               generation=gen_rows, editing=edit_rows)  # fmt: skip
    atomic_write_json(out / "lcg_fashion.json", res)
    md = (
        f"# LCG on a Fashion-MNIST autoencoder\n\nbudget {json.dumps(budget)}; wall {wall / 60:.1f} min on one "
        f"thread of a loaded 2-core machine.\n\nmodels: {json.dumps(m['info'])}\n\n## Generation (ACC: all "
        "targets hold; proxy FID vs 2000 test images)\n\n"
        + md_table(gs, ["target", "arm"], ["acc", "fid", "z_norm"])
        + f"\n## Editing (LCG edit scale {EDIT_SCALE}, t0 = 0.5)\n\n"
        + md_table(es, ["edit", "arm"], ["success", "preservation", "pixel_mse", "latent_l2"])
    )
    atomic_write_text(out / "lcg_fashion.md", md)
    log(f"done in {wall / 60:.1f} min")
    z_real = m["z_te_norm"]
    log(f"mean latent norm of encoded test images: {z_real:.3f}")


if __name__ == "__main__":
    main()
