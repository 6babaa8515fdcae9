"""Latent classifier guidance: shapes, the no-guidance equivalence, the guidance formula, the exact
reduction to latent arithmetic, the direction of guidance, errors and a learning test on digits latents."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers", reason="needs attnkit[diffusion]")

from attnkit.diffusion import DDPMSchedule  # noqa: E402
from attnkit.diffusion.latent_guidance import (  # noqa: E402
    LatentClassifier,
    LatentClassifierGuidance,
    LatentDenoiser,
    arithmetic_betas,
    fit_linear_directions,
    fit_linear_probes,
    linear_arithmetic_edit,
    train_latent_classifier,
    train_latent_ddpm,
)


class AnalyticDenoiser(nn.Module):
    """The exact ε of a N(0, I) latent prior: ε = √(1−ᾱ_t)·z_t."""

    def __init__(self, sched, dim):
        super().__init__()
        self.ac, self.config = sched.alphas_cumprod, {"dim": dim}

    def forward(self, z, t):
        return (1 - self.ac[t]).sqrt().to(z)[:, None] * z


class LinearLogistic(nn.Module):
    """A fixed binary logistic classifier, logits (0, wᵀz + b), independent of t."""

    num_classes = 2

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z, t):
        logit = z @ self.w.to(z) + self.b
        return torch.stack([torch.zeros_like(logit), logit], 1)


@pytest.fixture(scope="module")
def sched():
    return DDPMSchedule(1000, 1e-4, 0.02)


def _randomise(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m


def test_shapes_and_zero_init():
    den, clf = LatentDenoiser(32), LatentClassifier(32)
    z, t = torch.randn(5, 32), torch.randint(0, 1000, (5,))
    out = den(z, t)
    assert out.shape == (5, 32) and torch.equal(out, torch.zeros(5, 32))
    assert clf(z, t).shape == (5, 2)
    assert LatentClassifier(8, num_classes=3)(torch.randn(2, 8), torch.zeros(2, dtype=torch.long)).shape == (
        2,
        3,
    )


def test_unguided_sampling_is_plain_ddim_bit_for_bit(sched):
    den = _randomise(LatentDenoiser(8, hidden=32, depth=2, time_dim=16)).eval()
    clfs = {"a": _randomise(LatentClassifier(8, hidden=16, depth=1, time_dim=16), 1)}
    lcg = LatentClassifierGuidance(den, clfs, sched, num_inference_steps=20)
    ref = sched.sample(den, (6, 8), num_inference_steps=20, generator=torch.Generator().manual_seed(3))
    s0 = lcg.sample(6, {"a": 1}, scales=0.0, generator=torch.Generator().manual_seed(3))
    s_none = lcg.sample(6, {}, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s0, ref) and torch.equal(s_none, ref)
    s1 = lcg.sample(6, {"a": 1}, scales=1.0, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(s1, ref)


def test_edit_one_step_matches_hand_computed_guidance(sched):
    torch.manual_seed(0)
    d = 6
    den = _randomise(LatentDenoiser(d, hidden=16, depth=1, time_dim=8)).double().eval()
    clfs = {
        k: _randomise(LatentClassifier(d, hidden=16, depth=1, time_dim=8), i).double()
        for i, k in enumerate("ab")
    }
    lcg = LatentClassifierGuidance(den, clfs, sched, num_inference_steps=50)
    z_src = torch.randn(4, d, dtype=torch.float64)
    assert lcg.edit_timesteps(0.02) == [19]  # one DDIM step, 19 -> -1 (alpha_bar = 1)
    s, gamma, ks = 1.5, 0.7, 0.9
    out = lcg.edit(z_src, {"a": 1}, scales=s, t0=0.02, preserve=gamma, keep_scale=ks, inversion="ddim")
    # by hand: DDIM inversion 0 -> 19 with eps at t=0, then the guided eps at t=19
    ac = sched.alphas_cumprod
    tt0, tt = torch.zeros(4, dtype=torch.long), torch.full((4,), 19, dtype=torch.long)
    with torch.no_grad():
        e0 = den(z_src, tt0)
    z_t = ac[19].sqrt() * z_src + (1 - ac[19]).sqrt() * e0
    y_keep = clfs["b"](z_src, tt0).argmax(1)
    zz = z_t.clone().requires_grad_(True)
    lp = s * torch.log_softmax(clfs["a"](zz, tt), 1)[:, 1].sum()
    lp = lp + ks * torch.log_softmax(clfs["b"](zz, tt), 1).gather(1, y_keep[:, None]).sum()
    (grad,) = torch.autograd.grad(lp, zz)
    with torch.no_grad():
        eps = (
            den(z_t, tt)
            - (1 - ac[19]).sqrt() * grad
            + gamma * (z_t - ac[19].sqrt() * z_src) / (1 - ac[19]).sqrt()
        )
    expect = (z_t - (1 - ac[19]).sqrt() * eps) / ac[19].sqrt()
    assert torch.allclose(out, expect, atol=1e-6, rtol=0)


def _orth_residual(x, basis):
    q, _ = torch.linalg.qr(basis)  # (d, k)
    r = x - (x @ q) @ q.T
    return float(r.norm(dim=1).max() / x.norm(dim=1).min())


def test_exact_reduction_to_latent_arithmetic_float64(sched):
    d, g = 16, torch.Generator().manual_seed(0)
    w1, w2 = (
        torch.randn(d, generator=g, dtype=torch.float64),
        torch.randn(d, generator=g, dtype=torch.float64),
    )
    clfs = {"a": LinearLogistic(w1 * 0.3, 0.1), "b": LinearLogistic(w2 * 0.3, -0.2)}
    lcg = LatentClassifierGuidance(AnalyticDenoiser(sched, d), clfs, sched, num_inference_steps=50)
    z_src = torch.randn(3, d, generator=g, dtype=torch.float64)
    ts = lcg.edit_timesteps(0.5)
    assert len(ts) == 25 and ts[0] == 499
    inv = lcg.invert_ddim(z_src, ts)
    for i in range(3):
        assert _orth_residual(inv[i : i + 1], z_src[i : i + 1].T) <= 1e-12
    out = lcg.edit(z_src, {"a": 1}, scales=2.0, preserve=1.0, inversion="ddim")
    for i in range(3):
        basis = torch.stack([z_src[i], w1, w2], 1)
        assert _orth_residual(out[i : i + 1], basis) <= 1e-8
        assert _orth_residual(out[i : i + 1], z_src[i : i + 1].T) > 1e-3  # it did move off z_src
    # the unguided round trip multiplies by a product of per-step factors (not the identity)
    rt = lcg.edit(z_src, {"a": 1}, scales=0.0, preserve=0.0, keep=[], inversion="ddim")
    ac = sched.alphas_cumprod

    def a(t):
        return 1.0 if t < 0 else float(ac[t])

    c, s = 1.0, -1
    for t in sorted(ts):  # inversion: eps evaluated at max(s, 0)
        e = a(max(s, 0))
        c *= math.sqrt(a(t)) * (1 - math.sqrt(1 - a(s)) * math.sqrt(1 - e)) / math.sqrt(a(s)) + math.sqrt(
            (1 - a(t)) * (1 - e)
        )
        s = t
    for t in ts:  # reverse: cos(phi_t - phi_prev)
        p = t - 20
        c *= math.sqrt(a(p) * a(t)) + math.sqrt((1 - a(p)) * (1 - a(t)))
    assert 0.5 < c < 1.0
    assert torch.allclose(rt, c * z_src, atol=1e-10, rtol=0)


def _digits_pca(n_comp=16):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    x, y = load_digits(return_X_y=True)
    pca = PCA(n_comp, random_state=0).fit(x)
    z = torch.tensor(pca.transform(x), dtype=torch.float32)
    mean, std = z.mean(0), z.std(0)
    return (z - mean) / std, torch.tensor(y), pca, mean, std, x


@pytest.fixture(scope="module")
def digits():
    return _digits_pca()


def test_guidance_step_raises_log_probability(sched, digits):
    z, y = digits[0], digits[1]
    g = torch.Generator().manual_seed(0)
    clf = LatentClassifier(16, hidden=64, depth=2, time_dim=32)
    train_latent_classifier(clf, z, (y == 0).long(), sched, steps=300, generator=g)
    den = LatentDenoiser(16, hidden=32, depth=1, time_dim=16).eval()
    lcg = LatentClassifierGuidance(den, {"zero": clf}, sched, num_inference_steps=50)
    zt = torch.randn(100, 16, generator=g)
    t, t_prev = 499, 479
    sch = sched.sample_scheduler
    sch.set_timesteps(50)
    un = sch.step(lcg.guided_eps(zt, t), t, zt).prev_sample
    gd = sch.step(lcg.guided_eps(zt, t, [("zero", 1, 2.0)]), t, zt).prev_sample
    tp = torch.full((100,), t_prev, dtype=torch.long)
    with torch.no_grad():
        lp_un = torch.log_softmax(clf(un, tp), 1)[:, 1].mean()
        lp_gd = torch.log_softmax(clf(gd, tp), 1)[:, 1].mean()
    assert lp_gd > lp_un


def test_errors(sched):
    den = LatentDenoiser(4, hidden=8, depth=1, time_dim=8)
    lcg = LatentClassifierGuidance(den, {"a": LatentClassifier(4, hidden=8, depth=1, time_dim=8)}, sched, 10)
    with pytest.raises(KeyError, match="known"):
        lcg.sample(2, {"nope": 1})
    with pytest.raises(ValueError, match="0..1"):
        lcg.sample(2, {"a": 2})
    with pytest.raises(ValueError, match="0..1"):
        lcg.edit(torch.randn(2, 4), {"a": "x"})
    with pytest.raises(ValueError, match="inversion"):
        lcg.edit(torch.randn(2, 4), {"a": 1}, inversion="bad")
    with pytest.raises(ValueError, match="t0"):
        lcg.edit(torch.randn(2, 4), {"a": 1}, t0=0.0)
    with pytest.raises(TypeError, match="DDPMSchedule"):
        LatentClassifierGuidance(den, {}, object())
    with pytest.raises(KeyError, match="direction"):
        linear_arithmetic_edit(torch.randn(2, 4), {}, {"a": 1.0})


def test_linear_directions_and_arithmetic(digits):
    z, y = digits[0].double(), digits[1]
    labels = {"zero": (y == 0).long(), "big": (y >= 5).long()}
    dirs = fit_linear_directions(z, labels)
    assert all(abs(float(v.norm()) - 1) < 1e-12 for v in dirs.values())
    probes = fit_linear_probes(z, labels)
    src = z[y != 0][:50]
    beta = arithmetic_betas(src, probes["zero"], 1, prob=0.9)
    out = linear_arithmetic_edit(src, dirs, {"zero": beta})
    w, b = probes["zero"]
    p = torch.sigmoid(out @ w + b)
    assert torch.all(p >= 0.9 - 1e-9) and torch.all(beta >= 0)
    assert torch.allclose(out - src, beta[:, None] * dirs["zero"][None], atol=1e-12)


def test_edit_sequence_chains(sched, digits):
    z = digits[0][:8]
    den = _randomise(LatentDenoiser(16, hidden=16, depth=1, time_dim=8)).eval()
    clfs = {
        k: _randomise(LatentClassifier(16, hidden=16, depth=1, time_dim=8), i) for i, k in enumerate("ab")
    }
    lcg = LatentClassifierGuidance(den, clfs, sched, num_inference_steps=10)
    outs = lcg.edit_sequence(z, [{"a": 1}, {"b": 0}], inversion="ddim")
    assert len(outs) == 2 and outs[0].shape == z.shape
    assert torch.allclose(outs[1], lcg.edit(outs[0], {"b": 0}, inversion="ddim"))


@pytest.mark.slow
def test_guided_sampling_doubles_the_rate_of_zeros_on_digits(sched, digits):
    from sklearn.linear_model import LogisticRegression

    z, y, pca, mean, std, x = digits
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    den = LatentDenoiser(16, hidden=128, depth=2, time_dim=32)
    train_latent_ddpm(den, z, sched, steps=3000, batch_size=256, lr=2e-3, generator=g)
    den.eval()
    clf = LatentClassifier(16, hidden=64, depth=2, time_dim=32)
    train_latent_classifier(clf, z, (y == 0).long(), sched, steps=1500, generator=g)
    judge = LogisticRegression(max_iter=3000).fit(x, y.numpy())  # held out: a pixel-space classifier
    lcg = LatentClassifierGuidance(den, {"zero": clf}, sched, num_inference_steps=50)

    def rate(s):
        zs = lcg.sample(500, {"zero": 1}, scales=s, generator=torch.Generator().manual_seed(5))
        pix = pca.inverse_transform((zs * std + mean).double().numpy())
        return float((judge.predict(pix) == 0).mean())

    base, guided = rate(0.0), rate(4.0)
    assert guided >= 2 * base and guided > 0.2


def test_package_exports_the_lcg_api_and_step_count_is_checked(sched):
    import attnkit.diffusion as d
    from attnkit.diffusion import latent_guidance

    for name in latent_guidance.__all__:
        assert getattr(d, name) is getattr(latent_guidance, name) and name in d.__all__
    z, y = torch.randn(8, 3), torch.arange(8) % 2
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_latent_classifier(LatentClassifier(3, hidden=8, depth=1, time_dim=8), z, y, sched, steps=0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_latent_ddpm(LatentDenoiser(3, hidden=8, depth=1, time_dim=8), z, sched, steps=0)
