"""CLoT smoke demo: one explorative self-refinement round on SmolLM2-135M with LoRA (r = 64, q/k/v/o).

A SMOKE DEMO on a tiny text-only prompt set written for attnkit (below) — not Oogiri-GO, not the paper's
model (Qwen-VL-Chat) and not a humour evaluation. It shows the round running end to end on real weights:
candidates generated with condition nouns, scored by the model's own choice prompt, the best kept, and the
LoRA adapter tuned on them; it reports the mean log-likelihood of the kept answers under the plain
generation prompt (no nouns) before and after tuning, which the round is meant to raise.

Run: ``OMP_NUM_THREADS=1 python benchmarks/clot_smollm2.py`` (a few minutes on one loaded core).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import RESULTS_DIR, env_metadata, markdown_table, write_outputs  # noqa: E402

from attnkit.generative.clot import (  # noqa: E402
    clot_lora_config,
    format_prompt,
    oogiri_generation_example,
    self_refinement_round,
    tune_on_examples,
)
from attnkit.generative.encoders import load_smollm2  # noqa: E402

# Written for this demo (T2T, English). Not from Oogiri-GO.
PROMPTS = [
    "What would a cat say at a job interview?",
    "Why did the robot refuse to go to the beach?",
    "What is the worst thing to hear from your dentist?",
    "Describe a very lazy superhero.",
]
NOUNS = ["moon", "tax form", "piano", "soup", "umbrella", "penguin", "traffic light", "spreadsheet", "cactus",
         "submarine", "wifi", "grandmother"]  # fmt: skip


@torch.no_grad()
def answer_logprob(model, tok, row: dict, answer: str) -> float:
    """Mean log-probability per token of ``answer`` after the plain generation prompt."""
    p = tok(format_prompt(tok, oogiri_generation_example(row)["prompt"], True), add_special_tokens=False)[
        "input_ids"
    ]
    t = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t])
    logp = torch.log_softmax(model(ids).logits[0, len(p) - 1 : -1].float(), -1)  # (len(t), V)
    return float(logp.gather(1, torch.tensor(t)[:, None]).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    peft = __import__("peft")
    tok, model = load_smollm2(torch.float32)
    model = peft.get_peft_model(model, clot_lora_config(("q_proj", "k_proj", "v_proj", "o_proj")))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable == 7_372_800, trainable
    rows = [{"type": "T2T", "question": q, "image": None} for q in PROMPTS]
    res = self_refinement_round(
        model,
        tok,
        rows,
        NOUNS,
        n_candidates=a.candidates,
        keep=1,
        steps=0,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
    )
    t_gen = time.time() - t0
    before = [answer_logprob(model, tok, r, s[0]) for r, s in zip(rows, res.selected)]
    # tune on the kept answers (the round's last step, run here separately to time and measure it)
    examples = [oogiri_generation_example({**r, "text": s[0]}) for r, s in zip(rows, res.selected)]
    t1 = time.time()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    losses = tune_on_examples(model, tok, examples, a.steps, opt, True)
    t_tune = time.time() - t1
    after = [answer_logprob(model, tok, r, s[0]) for r, s in zip(rows, res.selected)]
    table = []
    for i, q in enumerate(PROMPTS):
        table.append(
            {
                "prompt": q,
                "candidates": " / ".join(f"{c} [{s:.2f}]" for c, s in zip(res.candidates[i], res.scores[i])),
                "kept": res.selected[i][0],
                "logp_before": before[i],
                "logp_after": after[i],
            }
        )
    md = markdown_table(
        table,
        [
            ("prompt (ours)", "prompt", None),
            ("candidates [self-score]", "candidates", None),
            ("kept", "kept", None),
            ("log p before", "logp_before", lambda v: f"{v:.3f}"),
            ("log p after", "logp_after", lambda v: f"{v:.3f}"),
        ],
    )
    header = (
        "# CLoT self-refinement round on SmolLM2-135M (smoke demo, our prompts — not Oogiri-GO)\n\n"
        f"LoRA r = 64, α = 16, dropout 0.05 on q/k/v/o: {trainable:,} trainable parameters "
        f"({100 * trainable / (total - trainable):.1f} % of the base). {a.candidates} candidates per prompt, "
        f"{a.max_new_tokens} new tokens, {a.steps} LoRA steps (AdamW lr {a.lr}) on the kept answers; "
        f"training losses {', '.join(f'{v:.3f}' for v in losses)}. Generation + self-scoring {t_gen:.0f} s, "
        f"tuning {t_tune:.0f} s, on one thread of a shared, loaded 2-core machine. log p: mean log-probability "
        "per token of the kept answer under the plain prompt (no nouns).\n\n"
    )
    rows_out = [{**r, "losses": losses, "trainable": trainable, "env": env_metadata()} for r in table]
    write_outputs(rows_out, "clot_smollm2", header + md + "\n", a.out)
    print(header + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
