"""Equal-error interpolation (log-log) on synthetic power-law work-precision curves."""

from __future__ import annotations

import math

import pytest

from attnkit.ode._bench import cost_at_error, equal_error_ratio, pareto_points


def _power_law(costs, c=3.0, p=4.0):
    return [c * x**-p for x in costs]


@pytest.mark.parametrize("p", [1.0, 4.0, 8.0])
def test_power_law_interpolation_is_exact(p):
    costs = [0.1, 0.2, 0.4, 0.8, 1.6]
    errs = _power_law(costs, p=p)
    for true_cost in (0.13, 0.3, 0.55, 1.2):
        target = 3.0 * true_cost**-p
        ee = cost_at_error(costs, errs, target)
        assert ee.status == "interpolated"
        assert ee.cost == pytest.approx(true_cost, rel=1e-12)


def test_measured_point_and_order_independence():
    costs = [1.6, 0.1, 0.8, 0.4, 0.2]  # unsorted input
    errs = _power_law(costs)
    ee = cost_at_error(costs, errs, errs[3])
    assert ee.cost == pytest.approx(0.4, rel=1e-14) and ee.lower == ee.upper == 3


def test_extrapolation_flagged_and_bounded():
    costs = [0.1, 0.2, 0.4]
    errs = _power_law(costs, p=2.0)
    # half a decade below the smallest error: extrapolated along the last segment (exact for a power law)
    target = errs[-1] / 10**0.5
    ee = cost_at_error(costs, errs, target, max_extrapolation=1.0)
    assert ee.status == "extrapolated"
    assert ee.cost == pytest.approx((3.0 / target) ** 0.5, rel=1e-12)
    # two decades out: only a bound (the most accurate point's cost: reaching less error costs more)
    far = cost_at_error(costs, errs, errs[-1] / 100.0, max_extrapolation=1.0)
    assert far.status == "at_least" and far.cost == 0.4
    assert cost_at_error(costs, errs, errs[-1] / 2, max_extrapolation=0.0).status == "at_least"
    high = cost_at_error(costs, errs, errs[0] * 1e3, max_extrapolation=1.0)
    assert high.status == "at_most" and high.cost == 0.1
    assert math.isnan(cost_at_error([1.0], [float("nan")], 1e-3).cost)

    # above the largest error (a cheaper setting would do): extrapolated towards lower cost
    up = cost_at_error(costs, errs, errs[0] * 2.0)
    assert up.status == "extrapolated" and up.cost < 0.1


def test_round_off_floor_is_not_extrapolated():
    # float32-like: the error stops falling at ~1e-9; a target just below the floor is unreachable
    costs, errs = [1.0, 2.0, 4.0], [1e-7, 1.2e-9, 1.0e-9]
    ee = cost_at_error(costs, errs, 8e-10)
    assert ee.status == "at_least" and ee.cost == 4.0


def test_pareto_drops_dominated_and_nonfinite_points():
    costs = [0.1, 0.2, 0.3, 0.4, 0.5]
    errs = [1e-2, 1e-3, 5e-3, float("nan"), 1e-4]  # 0.3 is dominated by 0.2, 0.4 blew up
    assert pareto_points(costs, errs) == [0, 1, 4]
    ee = cost_at_error(costs, errs, 1e-3**0.5 * 1e-4**0.5)  # halfway in log between 0.2 and 0.5
    assert ee.cost == pytest.approx(math.sqrt(0.2 * 0.5), rel=1e-12)
    with pytest.raises(ValueError):
        pareto_points([0.0, 1.0], [1.0, 0.1])
    with pytest.raises(ValueError):
        cost_at_error(costs, errs, 0.0)


def test_per_round_ratio():
    # family: RK-like, error = c * t^-4; corrected solver reaches the error of t = 0.5 in 0.1 s
    members = {"a": [0.25, 0.5, 0.25], "b": [1.0, 2.0, 1.0]}  # round 1 is twice as slow for everyone
    errors = {"a": 3.0 * 0.25**-4, "b": 3.0 * 1.0**-4}
    target = 3.0 * 0.5**-4
    rr = equal_error_ratio([0.1, 0.2, 0.1], target, members, errors)
    assert rr.round_ratios == pytest.approx((5.0, 5.0, 5.0), rel=1e-12)  # load cancels within a round
    assert rr.ratio == pytest.approx(5.0) and rr.status == "interpolated"
    out = equal_error_ratio([0.1, 0.2, 0.1], 1e-9, members, errors)
    assert out.status == "at_least" and out.ratio == pytest.approx(10.0)  # >= 1.0 s / 0.1 s
    with pytest.raises(ValueError):
        equal_error_ratio([0.1], target, members, errors)
