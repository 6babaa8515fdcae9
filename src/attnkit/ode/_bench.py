"""Equal-error cost comparison: log-log interpolation of error-vs-cost curves, and per-round ratios.

A method family (RK4 at several steps, DOP853 at several tolerances, ...) gives points
``(cost_i, error_i)``. Its cost **at a target error** is read off the log-log curve through its Pareto
points (those no cheaper point beats), by linear interpolation of ``log cost`` against ``log error``
between the two points that bracket the target. For a power law ``error = C cost^-p`` (a fixed-order
method in its asymptotic range) this is exact. Outside the measured range the last segment's slope is
used for at most ``max_extrapolation`` decades of error and the result is flagged, but never along a
segment flatter than ``cost^-1`` below the measured errors (a round-off floor, as in float32); further
out only a bound is given.

The speed-up of a corrected solver over a family at equal error is that family's interpolated cost
divided by the corrected solver's cost. With timings from interleaved rounds it is computed **per
round** (each round's curve against the same round's corrected time) and summarised by the median and
spread over rounds (:func:`attnkit.measure.interleaved.median_spread`, the convention of
:func:`attnkit.measure.summarize_rounds`), so load that hits one round hits every arm of it.

Reference:
    Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I" (work-precision diagrams);
    the equal-error protocol of Hypersolvers (Poli et al., arXiv 2007.09601).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..measure.interleaved import median_spread

__all__ = ["EqualError", "pareto_points", "cost_at_error", "equal_error_ratio", "RoundRatio"]


@dataclass(frozen=True)
class EqualError:
    """A family's cost at a target error.

    Attributes:
        cost: interpolated cost (seconds, or any positive cost unit); ``nan`` when unknown.
        status: ``"interpolated"``, ``"extrapolated"`` (beyond the measured errors, within the allowed
            decades), ``"at_least"`` (the target is further below every measured error: ``cost`` is
            the most accurate point's cost, a lower bound for a family whose error falls with cost),
            ``"at_most"`` (further above every measured error: the cheapest point's cost, an upper
            bound) or ``"out_of_range"`` (no usable point; ``cost`` is nan).
        lower, upper: indices (into the input points) of the bracketing Pareto points used.
    """

    cost: float
    status: str
    lower: int | None = None
    upper: int | None = None


def pareto_points(costs: Sequence[float], errors: Sequence[float]) -> list[int]:
    """Indices of the Pareto points, cheapest first: each has a lower error than every cheaper point.

    Args:
        costs: positive costs.
        errors: positive errors (non-finite errors, e.g. a blown-up run, are skipped).

    Returns:
        Point indices sorted by increasing cost (and so decreasing error).

    Raises:
        ValueError: unequal lengths or a non-positive cost.
    """
    if len(costs) != len(errors):
        raise ValueError(f"costs and errors differ in length: {len(costs)} vs {len(errors)}")
    if any(not (c > 0) for c in costs):
        raise ValueError(f"costs must be positive, got {list(costs)}")
    order = sorted(range(len(costs)), key=lambda i: (costs[i], errors[i]))
    front, best = [], math.inf
    for i in order:
        e = errors[i]
        if math.isfinite(e) and 0 < e < best:
            front.append(i)
            best = e
    return front


def cost_at_error(
    costs: Sequence[float],
    errors: Sequence[float],
    target: float,
    *,
    max_extrapolation: float = 1.0,
    min_order: float = 1.0,
) -> EqualError:
    """A family's cost at ``target`` error by log-log interpolation through its Pareto points.

    Args:
        costs: the family's costs ``(n,)``, positive.
        errors: the family's errors ``(n,)``, positive (non-finite ones are ignored).
        target: the error to match (positive).
        max_extrapolation: how many decades of error beyond the measured range the end segment's
            slope may be extended (0 disables extrapolation).
        min_order: below the smallest measured error, the last segment is extended only if its
            log-log slope is at most ``-min_order`` (error falls at least as ``cost^-min_order``);
            otherwise (a round-off floor, e.g. float32) only the ``"at_least"`` bound is given.

    Returns:
        :class:`EqualError`. A single Pareto point gives its own cost when its error equals the target
        and ``out_of_range`` otherwise.

    Raises:
        ValueError: a non-positive target or cost, unequal lengths.
    """
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target error must be positive and finite, got {target}")
    front = pareto_points(costs, errors)
    if not front:
        return EqualError(math.nan, "out_of_range")
    lc = [math.log(costs[i]) for i in front]
    le = [math.log(errors[i]) for i in front]  # decreasing
    lt = math.log(target)
    for k in range(len(front)):
        if le[k] == lt:
            return EqualError(costs[front[k]], "interpolated", front[k], front[k])
    if len(front) == 1:
        kind = "at_least" if lt < le[0] else "at_most"
        return EqualError(costs[front[0]], kind, front[0], front[0])
    if le[-1] < lt < le[0]:
        k = next(j for j in range(len(front) - 1) if le[j] > lt > le[j + 1])
        status = "interpolated"
    else:
        k = 0 if lt > le[0] else len(front) - 2
        gap = (lt - le[0]) if lt > le[0] else (le[-1] - lt)
        # below the measured errors, extend only a segment that still converges (error falling at
        # least as fast as 1/cost); a flatter end is a round-off floor, not a trend
        slope = (le[k + 1] - le[k]) / (lc[k + 1] - lc[k])
        flat = lt < le[-1] and slope > -min_order
        if flat or gap > max_extrapolation * math.log(10.0):
            if lt < le[-1]:
                return EqualError(costs[front[-1]], "at_least", front[-1], front[-1])
            return EqualError(costs[front[0]], "at_most", front[0], front[0])
        status = "extrapolated"
    w = (lt - le[k]) / (le[k + 1] - le[k])
    return EqualError(math.exp(lc[k] + w * (lc[k + 1] - lc[k])), status, front[k], front[k + 1])


@dataclass(frozen=True)
class RoundRatio:
    """A family's cost over the corrected solver's at equal error, summarised over interleaved rounds.

    Attributes:
        ratio: median over rounds of (family cost at the target error) / (corrected cost); > 1 means the
            corrected solver is faster. With ``status`` ``"at_least"``/``"at_most"`` it is a bound
            (the true ratio is at least / at most this); ``nan`` when no point is usable.
        low, high: spread over rounds (IQR for >= 4 rounds, else min and max).
        status: the :class:`EqualError` status (of the median-time curve; ``"at_least"``/``"at_most"``
            make ``ratio`` a bound).
        round_ratios: the per-round ratios.
    """

    ratio: float
    low: float
    high: float
    status: str
    round_ratios: tuple[float, ...]


def equal_error_ratio(
    corrected_times: Sequence[float],
    corrected_error: float,
    family_times: Mapping[str, Sequence[float]],
    family_errors: Mapping[str, float],
    *,
    max_extrapolation: float = 1.0,
) -> RoundRatio:
    """Per-round equal-error ratio of one baseline family against the corrected solver.

    Args:
        corrected_times: the corrected solver's time in each round ``(R,)``.
        corrected_error: its error (the target).
        family_times: per family member (a setting), its time in each round ``(R,)``.
        family_errors: per member, its error (errors do not change between rounds).
        max_extrapolation: as :func:`cost_at_error`.

    Returns:
        :class:`RoundRatio`.

    Raises:
        ValueError: unequal round counts or members without an error.
    """
    names = list(family_times)
    if set(names) != set(family_errors):
        raise ValueError(f"members with times {sorted(names)} and with errors {sorted(family_errors)} differ")
    r = len(corrected_times)
    if any(len(family_times[n]) != r for n in names):
        raise ValueError("every member needs one time per round, as many as the corrected solver")
    errs = [family_errors[n] for n in names]
    ratios = []
    for j in range(r):
        ee = cost_at_error(
            [family_times[n][j] for n in names], errs, corrected_error, max_extrapolation=max_extrapolation
        )
        ratios.append(ee.cost / corrected_times[j])
    med = cost_at_error(
        [statistics.median(family_times[n]) for n in names],
        errs,
        corrected_error,
        max_extrapolation=max_extrapolation,
    )
    if any(math.isnan(x) for x in ratios):
        return RoundRatio(math.nan, math.nan, math.nan, med.status, tuple(ratios))
    ratio, low, high = median_spread(ratios)
    return RoundRatio(ratio, low, high, med.status, tuple(ratios))
