import json
import math
import os
import pickle
import random

import numpy as np
import pytest

from attnkit.generative.geoformer import (
    OPERATORS,
    GeoformerInputs,
    answer_from_beams,
    corrupt_spans,
    evaluate_unigeo,
    execute_program,
    load_unigeo_rows,
    mep_example,
    normalize_geometry_text,
    patch_boxes,
    solving_tokens,
)


def test_spec_executor_checks():
    assert execute_program(["g_3", "n0", "n1"], [3, 4]) == [7]
    assert execute_program(["g_10", "n0", "n1"], [3, 4]) == [5.0]
    assert execute_program(["g_5", "n0"], [30]) == [pytest.approx(0.5)]
    assert execute_program(["g_5", "n0"], [20]) is None
    assert execute_program(["g_5", "n0"], [20], faithful=True) == [False]
    nums = list(range(100, 111))  # 11 numbers
    assert execute_program(["g_0", "n10"], nums) == [110]
    assert execute_program(["g_0", "n10"], nums, faithful=True) == [100]


# (operator index, operands, expected result or None for invalid)
CASES = [
    (0, [7], 7),
    (1, [7], 14),
    (2, [7], 3.5),
    (3, [2, 5], 7),
    (4, [2, 5], 3),
    (5, [90], 1.0),
    (5, [195], None),
    (6, [60], 0.5),
    (6, [-15], None),
    (7, [45], 1.0),
    (7, [90], None),
    (8, [0.5], 30.0),
    (8, [1], None),
    (9, [0.5], 60.0),
    (9, [-1], None),
    (10, [6, 8], 10.0),
    (11, [10, 6], 8.0),
    (11, [4, 4], None),
    (12, [2, 4, 6], 3.0),
    (12, [2, 0, 6], None),
    (13, [3, 4], 12),
    (14, [3, 4], 0.75),
    (14, [-3, 4], None),
    (15, [2], 4 * math.pi),
    (16, [2], 4 * math.pi),
    (17, [2, 3], 6 * math.pi),
]


@pytest.mark.parametrize("op,args,expected", CASES)
def test_every_operator_and_validity_rule(op, args, expected):
    tokens = [f"g_{op}"] + [f"n{i}" for i in range(len(args))]
    res = execute_program(tokens, args)
    if expected is None:
        assert res is None
        assert execute_program(tokens, args, faithful=True) == [False]
    else:
        assert res == [pytest.approx(expected)]
        # the official names are accepted too
        named = [OPERATORS[op][0]] + [f"N_{i}" for i in range(len(args))]
        assert execute_program(named, args) == [pytest.approx(expected)]


def test_all_18_operators_listed():
    assert len(OPERATORS) == 18
    assert [a for _, a, _ in OPERATORS] == [1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 2, 2, 3, 2, 2, 1, 1, 2]


def test_results_and_constants_chain():
    # 180 - 30 = 150 ; 150 / 2 = 75
    assert execute_program("g_4 c3 c0 g_2 v0", []) == [150, 75]
    # faithful: an invalid step becomes False = 0 in later arithmetic
    assert execute_program(["g_5", "n0", "g_3", "v0", "n1"], [20, 5], faithful=True) == [False, 5]
    assert execute_program(["g_5", "n0", "g_3", "v0", "n1"], [20, 5]) is None


@pytest.mark.parametrize(
    "prog",
    [["g_3", "n0"], ["g_99", "n0"], ["x", "n0"], ["g_0", "n5"], ["g_0", "v0"], ["g_0", "c7"], ["g_0", "q1"]],
)
def test_malformed_programs(prog):
    assert execute_program(prog, [1, 2]) is None


def test_execute_program_type_error():
    with pytest.raises(TypeError, match="tokens"):
        execute_program([1, 2], [1])


def test_answer_from_beams():
    options = [10.0, 7.0, None, 7.0005]
    beams = ["g_5 n0", "g_3 n0 n1", "g_13 n0 n1"]  # invalid, 7 (options 1 and 3), 12
    assert answer_from_beams(beams, [3, 4], options) == 1
    assert answer_from_beams(beams, [3, 4], options, faithful=True) == 3  # the official keeps the last hit
    assert answer_from_beams(["g_13 n0 n1"], [3, 4], options) is None
    with pytest.raises(ValueError, match="tol"):
        answer_from_beams(beams, [3, 4], options, tol=0)


def test_normalize_geometry_text():
    out = normalize_geometry_text("In △ABC, ∠C=90°, AB∥CD")
    assert out == "In triangle A B C , angle C = 90° , A B parallel C D"
    assert normalize_geometry_text("N_0 and Rt") == "N_0 and Rt"
    with pytest.raises(TypeError):
        normalize_geometry_text(3)


def test_solving_tokens_numbers_indexed():
    toks, nums = solving_tokens("解:∵∠A=30°,∴∠B=90°-30°=60°故选C")
    assert nums == [30.0, 90.0, 60.0]
    assert toks == [
        "because",
        "angle",
        "A",
        "=",
        "NS_0",
        "therefore",
        "angle",
        "B",
        "=",
        "NS_1",
        "-",
        "NS_0",
        "=",
        "NS_2",
    ]


def test_corrupt_spans_and_mep_example():
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(20))
    out = corrupt_spans(text, rng, 0.3).split()
    kept = [w for w in out if w != "<mask>"]
    assert len(kept) == 14 and all(w in text.split() for w in kept)
    assert "<mask> <mask>" not in " ".join(out)  # contiguous masks collapse into one span
    tasks = {mep_example("In △ABC, ∠A=30°", "∠B=60°故选A", rng=s)["task"] for s in range(20)}
    assert tasks == {"solving", "denoise"}
    ex = mep_example("In △ABC, ∠A=30°", "∠B=60°故选A", rng=random.Random(1), p_solving=1.0)
    assert ex == {
        "task": "solving",
        "source": "solving prediction: In triangle A B C , angle A = 30°",
        "target": "angle B = NS_0",
    }
    ex = mep_example("In △ABC, ∠A=30°", "x", rng=1, p_solving=0.0)
    assert ex["task"] == "denoise" and ex["target"] == "In triangle A B C , angle A = 30°"
    assert ex["source"].startswith("denoise text: ") and "<mask>" in ex["source"]
    with pytest.raises(ValueError):
        mep_example("a", "b", p_solving=2)


def test_patch_boxes():
    b = patch_boxes(7)
    assert b.shape == (49, 5)
    assert b[0].tolist() == pytest.approx([0, 0, 1 / 7, 1 / 7, 1 / 49])
    assert b[8].tolist() == pytest.approx([1 / 7, 1 / 7, 2 / 7, 2 / 7, 1 / 49])
    assert float(b[:, 4].sum()) == pytest.approx(1.0)


def _rows():
    calc = [
        {
            "id": 1,
            "English_problem": "In △ABC, ∠A=30°",
            "manual_program": ["g_3", "N_0", "N_1"],
            "numbers": [3, 4],
            "choice_nums": [7.0, 5.0, 12.0, 1.0],
            "label": 0,
            "image": np.zeros((4, 4), dtype=np.uint8),
        },
        {
            "id": 2,
            "English_problem": "AB=3, BC=4",
            "manual_program": ["g_10", "N_0", "N_1"],
            "numbers": [3, 4],
            "choice_nums": [7.0, 5.0, 12.0, 1.0],
            "label": 1,
            "image": np.zeros((4, 4), dtype=np.uint8),
        },
    ]
    prov = [
        {
            "input_text": "prove A B = C D",
            "proving_sequence": ["a", "b"],
            "problem_type": "proportions",
            "img": np.ones((2, 2, 3)),
        }
    ]
    return calc + prov


def test_evaluate_unigeo_on_rows_in_official_format(tmp_path):
    rows = _rows()
    path = tmp_path / "calculation_test.pk"
    with open(path, "wb") as f:
        pickle.dump(rows, f, protocol=2)
    loaded = load_unigeo_rows(path)
    assert np.array_equal(loaded[0]["image"], rows[0]["image"])
    preds = [["g_3 N_0 N_1"], ["g_5 N_0", "g_3 N_0 N_1"], ["x y", "a b"]]
    res = evaluate_unigeo(preds, loaded, calculation_types={1: "angle", 2: "length"})
    assert res["calculation_acc"] == 0.5  # row 2 picks option 0 (=7) but the label is 1
    assert res["calculation_no_result"] == 0.0
    assert res["calculation_angle"] == 1.0 and res["calculation_length"] == 0.0
    assert res["proving_acc"] == 1.0 and res["proving_triangle"] == 1.0
    assert (res["n_calculation"], res["n_proving"]) == (2, 1)
    with pytest.raises(ValueError, match="length"):
        evaluate_unigeo(preds[:1], loaded)
    inputs = GeoformerInputs()(loaded[0])
    assert inputs["source_text"] == "Calculation: In triangle A B C , angle A = 30°"
    assert inputs["target_text"] == "g_3 N_0 N_1" and tuple(inputs["boxes"].shape) == (49, 5)


def test_load_json_and_jsonl(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("image", "img")} for r in _rows()]
    (tmp_path / "r.json").write_text(json.dumps(rows))
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_unigeo_rows(tmp_path / "r.json") == rows == load_unigeo_rows(tmp_path / "r.jsonl")
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(ValueError, match="extension|must end"):
        load_unigeo_rows(tmp_path / "r.txt")
    (tmp_path / "d.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="list of dicts"):
        load_unigeo_rows(tmp_path / "d.json")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_crafted_pickle_cannot_run_code(tmp_path):
    path = tmp_path / "evil.pk"
    path.write_bytes(pickle.dumps([{"a": _Evil()}]))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_unigeo_rows(path)
    path.write_bytes(pickle.dumps([{"a": _Evil}]))  # a class reference is refused too
    with pytest.raises(pickle.UnpicklingError):
        load_unigeo_rows(path)


@pytest.mark.slow
def test_tiny_t5_geoformer_learns_programs_and_answers():
    """CPU smoke model: random tiny T5 + 7×7 patch embedding, overfit two problems, answer via beams."""
    import torch

    from attnkit.generative.geoformer import VisualEmbedding

    transformers = pytest.importorskip("transformers", reason="needs attnkit[llm]")
    torch.manual_seed(0)
    words = ["<pad>", "</s>", "Calculation:", "legs", "add", "hypotenuse", "of", "N_0", "N_1", "g_3", "g_10"]
    wid = {w: i for i, w in enumerate(words)}
    cfg = transformers.T5Config(
        vocab_size=len(words),
        d_model=64,
        d_ff=128,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(cfg)
    vis = VisualEmbedding(feat_dim=48, d_model=64)
    texts = ["Calculation: add legs N_0 N_1", "Calculation: hypotenuse of legs N_0 N_1"]
    programs = [["g_3", "N_0", "N_1"], ["g_10", "N_0", "N_1"]]
    ids = torch.tensor([[wid[w] for w in t.split()] + [0] * (6 - len(t.split())) + [1] for t in texts])
    mask = (ids != 0).long()
    labels = torch.tensor([[wid[w] for w in p] + [1] for p in programs])
    img = torch.rand(2, 3, 28, 28)
    feats = torch.nn.functional.unfold(img, 4, stride=4).transpose(1, 2)  # (2, 49, 48): 7×7 patches
    boxes = patch_boxes(7)
    opt = torch.optim.Adam([*model.parameters(), *vis.parameters()], lr=3e-3)
    for _ in range(80):
        emb, m = vis.encoder_inputs(model.get_input_embeddings(), ids, mask, feats, boxes)
        loss = model(inputs_embeds=emb, attention_mask=m, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        emb, m = vis.encoder_inputs(model.get_input_embeddings(), ids, mask, feats, boxes)
        out = model.generate(
            inputs_embeds=emb, attention_mask=m, num_beams=3, num_return_sequences=3, max_new_tokens=5
        )
    beams = [[" ".join(words[t] for t in seq if t > 1) for seq in out[i * 3 : (i + 1) * 3]] for i in range(2)]
    rows = [
        {"manual_program": p, "numbers": [3, 4], "choice_nums": [5.0, 7.0, 12.0, 1.0], "label": lab}
        for p, lab in zip(programs, [1, 0])
    ]
    assert [b[0] for b in beams] == ["g_3 N_0 N_1", "g_10 N_0 N_1"]
    assert evaluate_unigeo(beams, rows)["calculation_acc"] == 1.0
