import pytest
import torch

from attnkit.generative.clot import (
    INSTRUCTIONS,
    PERSONA,
    REPLY_CUE,
    clot_lora_config,
    discrimination_scores,
    oogiri_choice_example,
    oogiri_generation_example,
    oogiri_ranking_example,
    select_candidates,
    self_refinement_round,
)

Q = "What would a cat say at a job interview?"
ROWS = [
    {"type": "T2T", "question": Q, "image": None, "text": "I can knock things off desks.", "star": 3},
    {"type": "T2T", "question": Q, "image": None, "text": "My salary is tuna.", "star": 12},
    {"type": "T2T", "question": Q, "image": None, "text": "Meow.", "star": 0},
    {"type": "T2T", "question": Q, "image": None, "text": "I work nine lives to five.", "star": 7},
]


def test_generation_example_layout():
    ex = oogiri_generation_example(ROWS[1], condition_nouns=("moon", "umbrella"), paraphrase=2)
    assert ex["prompt"].startswith(PERSONA) and INSTRUCTIONS["T2T"][2] in ex["prompt"]
    assert f"Question: {Q}" in ex["prompt"] and "moon, umbrella" in ex["prompt"]
    assert ex["prompt"].rstrip().endswith(REPLY_CUE) and ex["target"] == "My salary is tuna."
    img = oogiri_generation_example({"type": "I2T", "image": "cat.png", "text": "x"})
    assert "<img>cat.png</img>" in img["prompt"] and "Question" not in img["prompt"]
    with pytest.raises(ValueError, match="type"):
        oogiri_generation_example({"type": "X2T", "question": "q"})
    with pytest.raises(ValueError, match="question"):
        oogiri_generation_example({"type": "T2T"})


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_choice_label_is_most_starred(k, seed):
    ex = oogiri_choice_example(ROWS, k=k, seed=seed)
    stars = {r["text"]: r["star"] for r in ROWS}
    shown = [stars[t] for t in ex["options"]]
    assert len(shown) == k and shown[ex["label"]] == max(shown)
    assert (
        ex["target"] == "ABCD"[ex["label"]]
        and f"{ex['target']}. {ex['options'][ex['label']]}" in ex["prompt"]
    )


def test_ranking_and_errors():
    ex = oogiri_ranking_example(ROWS)
    assert ex["order"] == [1, 3, 0, 2] and ex["target"] == "B > D > A > C"
    with pytest.raises(ValueError, match="same question"):
        oogiri_choice_example([ROWS[0], {**ROWS[1], "question": "other"}], k=2)
    with pytest.raises(ValueError, match="k must"):
        oogiri_choice_example(ROWS, k=5)
    with pytest.raises(ValueError, match="star"):
        oogiri_ranking_example([{k: v for k, v in r.items() if k != "star"} for r in ROWS])


def test_selection_on_hand_made_scores():
    cands = ["a joke", "best joke", "", "A  Joke", "fine joke", "best joke"]
    scores = [0.2, 0.5, 0.9, 0.25, 0.05, 0.1]
    assert select_candidates(cands, scores, keep=1) == ["best joke"]
    # "A  Joke" duplicates "a joke": one entry, with the better score and its text; empty text is dropped
    assert select_candidates(cands, scores, keep=3) == ["best joke", "A  Joke", "fine joke"]
    assert select_candidates(cands, scores, keep=3, min_score=0.2) == ["best joke", "A  Joke"]
    assert select_candidates(["x", "y"], [0.5, 0.5], keep=1) == ["x"]  # ties: input order
    with pytest.raises(ValueError, match="length"):
        select_candidates(["x"], [0.1, 0.2])
    with pytest.raises(ValueError, match="keep"):
        select_candidates(["x"], [0.1], keep=0)


@pytest.mark.slow  # first import of peft/transformers
def test_lora_config_counts_on_tiny_llama():
    transformers = pytest.importorskip("transformers", reason="needs attnkit[llm]")
    peft = pytest.importorskip("peft", reason="needs attnkit[llm]")
    cfg = clot_lora_config()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (64, 16, 0.05)
    assert set(cfg.target_modules) == {"c_attn", "attn.c_proj"} and str(cfg.task_type).endswith("CAUSAL_LM")
    tiny = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    m = peft.get_peft_model(tiny, clot_lora_config(("q_proj", "k_proj", "v_proj", "o_proj"), r=8))
    n = sum(p.numel() for p in m.parameters() if p.requires_grad)
    # per layer: r·(in + out) for q (32→32), k, v (32→16) and o (32→32)
    assert n == 2 * 8 * ((32 + 32) + 2 * (32 + 16) + (32 + 32))
    with pytest.raises(ValueError):
        clot_lora_config(r=0)


QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")


@pytest.mark.slow
def test_smollm2_lora_count(smollm2):
    peft = pytest.importorskip("peft")
    _, model = smollm2()
    m = peft.get_peft_model(model, clot_lora_config(QKVO))
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    total = sum(p.numel() for p in m.parameters())
    assert trainable == 7_372_800
    assert abs(trainable / (total - trainable) - 0.0548) < 0.001  # 5.5 % of the 134.5M base


@pytest.mark.slow
def test_smollm2_self_refinement_round_end_to_end(smollm2):
    peft = pytest.importorskip("peft")
    tok, model = smollm2()
    m = peft.get_peft_model(model, clot_lora_config(QKVO))
    base = {
        n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad and "layers.0." in n
    }
    lora = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    rows = [{"type": "T2T", "question": Q, "image": None}]
    scores = discrimination_scores(m, tok, rows[0], ["Meow.", "My salary is tuna."])
    assert len(scores) == 2 and abs(sum(scores) - 1) < 1e-5 and all(0 < s < 1 for s in scores)
    res = self_refinement_round(
        m,
        tok,
        rows,
        ["moon", "tax", "piano", "soup"],
        n_candidates=3,
        keep=1,
        steps=1,
        lr=1e-3,
        max_new_tokens=8,
        seed=0,
    )
    assert len(res.candidates[0]) >= 2 and len(res.selected[0]) == 1
    assert (
        res.selected[0][0] == res.candidates[0][max(range(len(res.scores[0])), key=res.scores[0].__getitem__)]
    )
    assert len(res.losses) == 1 and torch.isfinite(torch.tensor(res.losses)).all()
    assert all(torch.equal(p, base[n]) for n, p in m.named_parameters() if n in base)
    assert any(not torch.equal(p, lora[n]) for n, p in m.named_parameters() if n in lora)
    with pytest.raises(ValueError, match="trainable"):
        self_refinement_round(model.requires_grad_(False), tok, rows, ["a", "b"])


def test_missing_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"attnkit\[llm\]"):
        clot_lora_config()
