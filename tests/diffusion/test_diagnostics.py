"""StabilityMonitor and stability_summary: keys, zero oscillation, the probe norm, run prefixes."""

import pytest
import torch

from attnkit.diffusion import (
    SUMMARY_KEYS,
    DDPMSchedule,
    StabilityMonitor,
    stability_summary,
    steps_to_target,
    uvit_tiny,
)


def _monitor():
    torch.manual_seed(0)
    m = uvit_tiny(depth=2)
    x0 = torch.randn(4, 1, 8, 8)
    t, noise = DDPMSchedule().draw(x0, torch.Generator().manual_seed(0))
    return m, StabilityMonitor(m, m.norm, (x0, t, noise), every=5)


def test_constant_loss_has_zero_oscillation_and_all_keys():
    m, mon = _monitor()
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    for s in range(300):
        mon.record(0.25, step=s)
    mon.record_eval(100, 5.0)
    mon.record_eval(200, 3.0)
    out = mon.summary(target_fid=4.0)
    assert set(out) == set(SUMMARY_KEYS)
    assert out["steps_to_fid"] == 200
    assert out["loss_oscillation"] == 0.0
    assert out["grad_norm_spikes"] == 0 and out["grad_norm_spread"] == 0.0
    n_params = sum(p.numel() for p in m.parameters())
    assert abs(out["grad_norm_median"] - n_params**0.5) < 1e-3 * n_params**0.5
    assert (
        abs(out["feature_norm_slope"]) < 1e-9 and out["feature_norm_diff_std"] == 0.0
    )  # same weights, same probe
    assert out["proxy_fid_final"] == 3.0 and out["proxy_fid_best"] == 3.0
    assert len(mon.feature_norm) == 60


def test_feature_norm_is_mean_per_token_norm_and_state_roundtrip():
    m, mon = _monitor()
    seen = []
    m.norm.register_forward_hook(lambda mod, i, o: seen.append(i[0].norm(dim=-1).mean().item()))
    v = mon.probe_feature_norm()
    assert abs(v - seen[-1]) < 1e-5
    mon.record(1.0, step=0)
    mon2 = _monitor()[1]
    mon2.load_state_dict(mon.state_dict())
    assert mon2.loss == mon.loss and mon2.feature_norm == mon.feature_norm


def test_steps_to_target():
    assert steps_to_target([(250, 9.0), (500, 4.0), (750, 3.0)], 4.4) == 500
    assert steps_to_target([(250, 9.0)], 1.0) is None


def _train(steps):
    """A tiny U-ViT trained for ``steps`` Adam steps at a constant lr, recorded by a monitor."""
    m, mon = _monitor()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    sched, g = DDPMSchedule(), torch.Generator().manual_seed(1)
    for step in range(steps):
        x0 = torch.randn(4, 1, 8, 8, generator=g)
        t, noise = sched.draw(x0, g)
        loss = sched.loss(m, x0, t=t, noise=noise)
        opt.zero_grad()
        loss.backward()
        mon.record(loss.detach(), step=step)
        opt.step()
        if (step + 1) % 10 == 0:
            mon.record_eval(step + 1, float(loss.detach()))
    return mon


def test_summary_of_a_prefix_is_the_summary_of_the_shorter_run():
    """The first n steps of a longer run, cut and summarised, give the measures of a run stopped at n."""
    n = 30
    long, short = _train(2 * n), _train(n)
    cut = stability_summary(
        long.loss[:n],
        long.grad_norm[:n],
        [(s, v) for s, v in long.feature_norm if s < n],
        [(s, v) for s, v in long.evals if s <= n],
        long.param_norm[:n],
        window=10,
        target_fid=1e9,
    )
    assert cut == short.summary(window=10, target_fid=1e9)
    assert cut != long.summary(window=10, target_fid=1e9)  # the cut changes the measures
    assert cut["steps"] == n and cut["steps_to_fid"] == 10


def test_stability_summary_rejects_curves_of_different_lengths():
    with pytest.raises(ValueError, match="grad_norm"):
        stability_summary([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="burn_in"):
        stability_summary([1.0], [1.0], burn_in=1.0)
