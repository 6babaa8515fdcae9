import copy

import pytest
import torch

from attnkit.generative.moextend import (
    ExtendedMoE,
    TopKMoE,
    expert_frequencies,
    extend_model,
    extend_moe,
    find_moe_blocks,
    record_router_logits,
    select_layers,
    upcycle_mlp,
)

transformers = pytest.importorskip("transformers", reason="needs attnkit[llm]")


def tiny_mixtral(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.MixtralConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=64,
    )
    return transformers.MixtralForCausalLM(cfg).eval()


def ids(seed=1, b=2, t=12):
    return torch.randint(0, 128, (b, t), generator=torch.Generator().manual_seed(seed))


def test_transformers_blocks_found_and_frequencies():
    model = tiny_mixtral()
    blocks = find_moe_blocks(model)
    assert sorted(blocks) == [0, 1]
    assert type(blocks[0]).__name__ == "MixtralSparseMoeBlock"
    logits = record_router_logits(model, [{"input_ids": ids()}])
    assert logits[0].shape == (24, 4)
    freq = expert_frequencies([logits[0], logits[1]])
    assert freq.shape == (2, 4)
    assert torch.allclose(freq.sum(1), torch.ones(2))


def test_expert_frequencies_top_vs_official():
    lg = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    assert expert_frequencies(lg).tolist() == pytest.approx([2 / 6, 2 / 6, 1 / 6, 1 / 6])
    # the official ascending argsort counts the two LEAST likely experts of each token
    assert expert_frequencies(lg, count="official").tolist() == pytest.approx([1 / 6, 1 / 6, 2 / 6, 2 / 6])
    sel = torch.softmax(lg, -1).argsort(-1)[:, :2]
    assert sel[0].tolist() == [3, 2]
    with pytest.raises(ValueError, match="count"):
        expert_frequencies(lg, count="bottom")
    with pytest.raises(ValueError, match="top_k"):
        expert_frequencies(lg, top_k=5)


def test_select_layers_matches_pandas_rule():
    before = torch.full((4, 4), 0.25)
    after = before.clone()
    after[1] = torch.tensor([0.7, 0.1, 0.1, 0.1])  # largest shift
    after[3] = torch.tensor([0.4, 0.2, 0.2, 0.2])
    after[0] = torch.tensor([0.26, 0.24, 0.25, 0.25])
    assert select_layers(before, after) == [1, 3]
    assert select_layers(before, after, fraction=0.25) == [1]
    with pytest.raises(ValueError):
        select_layers(before, after[:2])


def _routing_reference(block, x, ext):
    """The 9-way softmax, top-2 and renormalisation written out by hand (g = 0)."""
    logits = torch.cat([x @ block.gate.weight.T, x @ ext.router_row.T], -1)
    p = logits.softmax(-1)
    top, idx = p.topk(2, -1)
    return idx, top / top.sum(-1, keepdim=True)


def test_extend_mixtral_block_official_formula():
    model = tiny_mixtral()
    block = model.model.layers[0].mlp
    x = torch.randn(40, 32)
    ext = extend_moe(block, source_expert=2)
    idx, w, w_new = ext.route(block.gate(x)[0], x @ ext.router_row.T)
    ref_idx, ref_w = _routing_reference(block, x, ext)
    assert torch.equal(idx, ref_idx)
    full = w + torch.where(idx == 4, w_new[:, None], torch.zeros_like(w)) * (idx == 4)
    assert torch.allclose(full, ref_w, atol=1e-6)  # calibrated weights = renormalised top-2 (g = 0)
    # the new expert's output equals its source's
    g, u = torch.nn.functional.linear(x, block.experts.gate_up_proj[2]).chunk(2, -1)
    src = torch.nn.functional.linear(block.experts.act_fn(g) * u, block.experts.down_proj[2])
    assert torch.allclose(ext.new_expert(x), src, atol=1e-6)
    # calibration MLP: first layer N(0, 0.02²), second zero
    assert torch.count_nonzero(ext.calibration[2].weight) == 0
    assert 0.005 < ext.calibration[0].weight.std() < 0.05
    trainable = {n for n, p in ext.named_parameters() if p.requires_grad}
    assert trainable == {
        "new_gate_up",
        "new_down",
        "router_row",
        "calibration.0.weight",
        "calibration.2.weight",
    }
    # the official copy is exact for tokens whose first choice is not the source expert
    y0, y1 = block(x[None])[0], ext(x[None])[0]
    first = (x @ block.gate.weight.T).argmax(-1)
    assert torch.allclose(y0[first != 2], y1[first != 2], atol=1e-6)
    assert (first == 2).any() and not torch.allclose(y0[first == 2], y1[first == 2], atol=1e-4)


@pytest.mark.parametrize("routing", ["paired", "moextend"])
def test_extended_tiny_mixtral(routing):
    model = tiny_mixtral()
    ref = copy.deepcopy(model)
    inp = ids()
    with torch.no_grad():
        before = ref(inp).logits
    freq = expert_frequencies(list(record_router_logits(model, [{"input_ids": inp}]).values()))
    params = extend_model(model, [0, 1], freq.argmax(1).tolist(), routing=routing)
    assert all(isinstance(model.model.layers[i].mlp, ExtendedMoE) for i in (0, 1))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(names) == 10 and all(".mlp." in n and ".base." not in n for n in names)
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    with torch.no_grad():
        after = model(inp).logits
    if routing == "paired":
        assert (after - before).abs().max() < 1e-6  # exact identity before any step
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    new = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    loss = model(inp, labels=inp).loss
    loss.backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    changed = [n for n, p in model.named_parameters() if n in new and not torch.equal(p, new[n])]
    assert any("new_gate_up" in n for n in changed) and any("router_row" in n for n in changed)
    assert any("calibration.2" in n for n in changed)


def test_mixtral_8x7b_trainable_count_on_meta():
    cfg = transformers.MixtralConfig(hidden_size=4096, intermediate_size=14336, num_local_experts=8)
    with torch.device("meta"):
        block = transformers.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock(cfg)
        ext = extend_moe(block, 0)
    assert sum(p.numel() for p in ext.new_parameters()) == 176_165_152
    assert 16 * 176_165_152 + 20_979_712 == 2_839_622_144


def test_qwen2_moe_block_with_shared_expert():
    torch.manual_seed(0)
    cfg = transformers.Qwen2MoeConfig(
        hidden_size=32,
        moe_intermediate_size=24,
        shared_expert_intermediate_size=40,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
    )
    block = transformers.models.qwen2_moe.modeling_qwen2_moe.Qwen2MoeSparseMoeBlock(cfg)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 30, 32)
    ext = extend_moe(block, 1, routing="paired")
    assert torch.allclose(block(x), ext(x), atol=1e-6)


def test_own_topk_moe_and_upcycling():
    moe = TopKMoE(16, 24, 4)
    x = torch.randn(2, 5, 16)
    ext = extend_moe(moe, 3, routing="paired")
    assert torch.allclose(moe(x), ext(x), atol=1e-6)
    mlp = transformers.models.llama.modeling_llama.LlamaMLP(
        transformers.LlamaConfig(hidden_size=16, intermediate_size=24, num_attention_heads=4)
    )
    up = upcycle_mlp(mlp, num_experts=4)
    assert torch.allclose(up(x), mlp(x), atol=1e-6)  # identical experts: the MLP's function
    assert torch.allclose(extend_moe(up, 0)(x), mlp(x), atol=1e-6)


def test_bad_inputs():
    with pytest.raises(TypeError, match="MoE block"):
        extend_moe(torch.nn.Linear(3, 3), 0)
    moe = TopKMoE(8, 8, 4)
    with pytest.raises(ValueError, match="source_expert"):
        extend_moe(moe, 4)
    with pytest.raises(ValueError, match="routing"):
        extend_moe(moe, 0, routing="x")
    with pytest.raises(ValueError, match="source_experts"):
        extend_model(tiny_mixtral(), [0, 1], {0: 1})
