"""The EAN controller: policy init, REINFORCE/replay losses, synthetic convergence, caching, resume."""

import pytest
import torch

from attnkit.search import (
    ConnectionScheme,
    EANSearch,
    SchemePolicy,
    SearchConfig,
    on_policy_loss,
    replay_loss,
)

R50 = (3, 4, 6, 3)
GOOD, BAD = [0, 2, 5, 8, 14], [1, 9, 11, 12, 13]


def synthetic(counter=None):
    c = torch.zeros(16, dtype=torch.float64)
    c[GOOD], c[BAD] = 0.4, -0.2

    def acc(s: ConnectionScheme) -> float:
        if counter is not None:
            counter[s.bits] = counter.get(s.bits, 0) + 1
        return 70.0 + float((c * s.as_tensor().double()).sum())

    return acc


def test_policy_init_near_half_and_shapes():
    for seed in range(3):
        torch.manual_seed(seed)
        pol = SchemePolicy(16)
        p = pol.connect_probs()
        assert p.shape == (16,) and bool(((p >= 0.45) & (p <= 0.55)).all())
        a, lp = pol.sample(3, torch.Generator().manual_seed(seed))
        assert a.shape == lp.shape == (3, 16) and set(a.unique().tolist()) <= {0, 1}
        assert torch.allclose(lp, pol.log_prob(a))
    with pytest.raises(ValueError, match="parametrization"):
        SchemePolicy(4, parametrization="rnn")


def test_on_policy_loss_formula():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(3, 16, generator=g)
    adv = torch.tensor([1.5, -0.25, 0.75])
    want = -sum(float(adv[s]) * float(lp[s].sum()) for s in range(3)) / 3
    assert float(on_policy_loss(lp, adv)) == pytest.approx(want, abs=1e-6)


def test_replay_loss_formula_and_detached_ratio():
    g = torch.Generator().manual_seed(1)
    lp = (-torch.rand(3, 16, generator=g)).requires_grad_(True)
    old = lp.detach().exp() * (0.8 + 0.4 * torch.rand(3, 16, generator=g))  # ratios on both sides of the clip
    adv = torch.tensor([0.5, -1.0, 2.0])
    rho = lp.detach().exp() / old
    s1 = float((rho * lp.detach() * adv[:, None]).sum() / 3)
    s2 = float((rho.clamp(0.9, 1.1) * lp.detach() * adv[:, None]).sum() / 3)
    loss = replay_loss(lp, old, adv)
    assert float(loss.detach()) == pytest.approx(-0.1 * min(s1, s2), abs=1e-6)
    loss.backward()
    # rho carries no gradient: d loss / d lp = -0.1/3 * w * adv with w = rho (S1 branch) or clamp(rho) (S2)
    w = rho if s1 <= s2 else rho.clamp(0.9, 1.1)
    assert torch.allclose(lp.grad, -0.1 / 3 * w * adv[:, None], atol=1e-7)


@pytest.mark.slow
def test_synthetic_reward_moves_policy_to_the_optimum():
    opt = torch.zeros(16, dtype=torch.long)
    opt[GOOD] = 1
    hits = 0
    for seed in range(5):
        res = EANSearch(synthetic(), R50, SearchConfig(seed=seed)).run()
        agree = int((res.mode_scheme.as_tensor() == opt).sum())
        hits += agree >= 14
    assert hits >= 4
    # and the probabilities really moved: connected good blocks, disconnected bad ones (last seed)
    probs = torch.tensor(res.history[-1].connect_probs)
    assert float(probs[GOOD].mean()) > 0.8 and float(probs[BAD].mean()) < 0.2


def test_reward_offset_cancels():
    a = EANSearch(synthetic(), R50, SearchConfig(steps=40, seed=3, reward_offset=54.0)).run()
    b = EANSearch(synthetic(), R50, SearchConfig(steps=40, seed=3, reward_offset=0.0)).run()
    assert [h.scheme for h in a.history] == [h.scheme for h in b.history]
    assert torch.allclose(
        torch.tensor(a.history[-1].connect_probs), torch.tensor(b.history[-1].connect_probs), atol=1e-6
    )


def test_cache_calls_evaluator_once_per_scheme_and_changes_nothing():
    calls: dict[str, int] = {}
    cached = EANSearch(synthetic(calls), R50, SearchConfig(steps=40, seed=5, cache_rewards=True)).run()
    assert calls and max(calls.values()) == 1
    assert len(calls) == len({s.scheme for s in cached.samples})
    calls2: dict[str, int] = {}
    plain = EANSearch(synthetic(calls2), R50, SearchConfig(steps=40, seed=5, cache_rewards=False)).run()
    assert sum(calls2.values()) == 40 * 3
    assert [h.scheme for h in cached.history] == [h.scheme for h in plain.history]
    assert [h.loss for h in cached.history] == [h.loss for h in plain.history]


def test_state_dict_round_trip_resumes_exactly(tmp_path):
    full = EANSearch(synthetic(), R50, SearchConfig(steps=40, seed=7)).run()
    first = EANSearch(synthetic(), R50, SearchConfig(steps=40, seed=7))
    first.run(steps=20)
    torch.save(first.state_dict(), tmp_path / "s.pt")
    second = EANSearch(synthetic(), R50, SearchConfig(steps=40, seed=7))
    second.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=False))
    resumed = second.run()
    assert [(h.scheme, h.loss, h.replay_loss, h.baseline) for h in resumed.history] == [
        (h.scheme, h.loss, h.replay_loss, h.baseline) for h in full.history
    ]
    assert str(resumed.scheme) == str(full.scheme)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        EANSearch(synthetic(), (3, 3, 3), SearchConfig()).load_state_dict(first.state_dict())


def test_result_select_and_save(tmp_path):
    s = EANSearch(synthetic(), R50, SearchConfig(steps=15, seed=0, select="best"))
    res = s.run()
    assert res.scheme == res.best_scheme
    assert res.best_reward == max(r.reward for r in res.samples)
    res.save(tmp_path)
    lines = (tmp_path / "search_log.csv").read_text().splitlines()
    assert len(lines) == 16 and lines[0].startswith("step,loss")
    assert len((tmp_path / "search_samples.jsonl").read_text().splitlines()) == 45
    with pytest.raises(ValueError, match="select"):
        SearchConfig(select="first").validate()
