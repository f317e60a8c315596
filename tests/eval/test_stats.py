"""ftorch.eval.stats against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ftorch.eval.stats import (
    bounded_mean_interval,
    mcnemar,
    paired_bootstrap,
    paired_difference_interval,
    too_small,
    wilson_interval,
)


@pytest.mark.parametrize(("successes", "n", "expected"), [
    # 0/10: upper = (z²/n) / (1 + z²/n) = 0.38416 / 1.38416
    (0, 10, (0.000, 0.278)),
    # 5/10: centre 0.5, half = 1.96/1.38416 * sqrt(0.025 + 3.8416/400) = 0.2634
    (5, 10, (0.237, 0.763)),
    (10, 10, (0.722, 1.000)),
    # 1/4: centre (0.25 + 0.4802)/1.9604 = 0.3725, half = 0.99980 * sqrt(0.046875 + 0.060025) = 0.3269
    (1, 4, (0.046, 0.699)),
])
def test_wilson_hand_computed(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert (round(low, 3), round(high, 3)) == expected


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    narrow, wide = wilson_interval(50, 100, z=1.0), wilson_interval(50, 100, z=2.576)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)


def test_mcnemar_exact_small_table():
    # 10 items: A right/B wrong on 6, A wrong/B right on 1, both right on 2, both wrong on 1.
    a = [True] * 6 + [False] + [True] * 2 + [False]
    b = [False] * 6 + [True] + [True] * 2 + [False]
    result = mcnemar(a, b)
    assert (result["b01"], result["b10"], result["n"]) == (1, 6, 10)
    # n = 7 discordant, k = 1: 2 * (C(7,0) + C(7,1)) / 2**7 = 2 * 8 / 128
    assert result["p_value"] == pytest.approx(0.125)
    assert result["method"] == "exact" and result["statistic"] is None
    assert result["better"] == "a"
    assert mcnemar(b, a)["better"] == "b"


def test_mcnemar_one_sided_table_and_ties():
    a, b = [False] * 5, [True] * 5
    assert mcnemar(a, b)["p_value"] == pytest.approx(2 / 32)  # 2 * C(5,0) / 2**5
    same = mcnemar([True, False, True], [True, False, True])
    assert (same["b01"], same["b10"], same["p_value"], same["better"]) == (0, 0, 1.0, "tie")
    balanced = mcnemar([True, False], [False, True])
    assert balanced["p_value"] == 1.0 and balanced["better"] == "tie"
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_mcnemar_chi_square_fallback_close_to_exact():
    a = [False] * 600 + [True] * 500
    b = [True] * 600 + [False] * 500
    result = mcnemar(a, b)
    assert result["method"] == "chi2_cc"
    assert result["statistic"] == pytest.approx(99**2 / 1100)
    assert result["p_value"] == pytest.approx(math.erfc(math.sqrt(99**2 / 1100 / 2)))
    exact = 2 * sum(math.comb(1100, i) for i in range(501)) / 2**1100
    assert result["p_value"] == pytest.approx(exact, rel=0.1)
    assert result["better"] == "b"


def test_paired_bootstrap_deterministic_and_signed():
    a = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0] * 4
    b = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0] * 4
    first = paired_bootstrap(a, b, iterations=500, seed=7)
    assert first == paired_bootstrap(a, b, iterations=500, seed=7)
    assert first["mean_diff"] == pytest.approx(0.4)
    low, high = first["ci"]
    assert 0 < low < 0.4 < high <= 1
    assert first["p_value"] < 0.01
    reverse = paired_bootstrap(b, a, iterations=500, seed=7)
    assert reverse["mean_diff"] == pytest.approx(-0.4) and reverse["ci"][1] < 0
    assert paired_bootstrap(a, b, iterations=500, seed=8)["ci"] != first["ci"]


def test_paired_bootstrap_no_difference_and_errors():
    same = paired_bootstrap([0.3, 0.5, 0.9], [0.3, 0.5, 0.9], iterations=100)
    assert same["mean_diff"] == 0.0 and same["ci"] == (0.0, 0.0) and same["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_too_small():
    assert too_small(29) and not too_small(30)
    assert too_small(9, minimum=10) and not too_small(10, minimum=10)


def test_bounded_mean_interval_never_degenerates():
    # 40 zeros: upper = (z²/n) / (1 + z²/n) = 0.096040 / 1.096040 = 0.0876; a normal interval says 0.0–0.0%
    low, high = bounded_mean_interval([0.0] * 40)
    assert low == 0.0 and high == pytest.approx(0.0876, abs=1e-4) and high > 0
    low, high = bounded_mean_interval([1.0] * 40)
    assert low == pytest.approx(1 - 0.0876, abs=1e-4) and low < 1 and high == 1.0
    assert bounded_mean_interval([]) == (0.0, 1.0)
    low, high = bounded_mean_interval([0.5])  # one item: wide, but not a point
    assert 0 < low < 0.5 < high < 1
    low, high = bounded_mean_interval([0.5] * 40)  # no spread, yet not a point
    assert low < 0.5 < high


def test_bounded_mean_interval_is_wilson_at_the_mean():
    # 0/1 values: exactly the Wilson interval; graded values: Wilson's formula at the mean
    assert bounded_mean_interval([1.0] * 5 + [0.0] * 5) == pytest.approx(wilson_interval(5, 10))
    graded = [0.2, 0.4, 0.6, 0.8] * 10  # mean 0.5 over 40: centre 0.5,
    # half = 1.96/1.09604 * sqrt(0.00625 + 0.00060) = 0.148
    low, high = bounded_mean_interval(graded)
    half = 1.96 / (1 + 1.96**2 / 40) * math.sqrt(0.25 / 40 + 1.96**2 / (4 * 40**2))
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert (round(low, 3), round(high, 3)) == (0.352, 0.648)
    assert bounded_mean_interval([0.1] * 40, z=2.576)[1] > bounded_mean_interval([0.1] * 40)[1]
    with pytest.raises(ValueError):
        bounded_mean_interval([0.5, 1.5])
    with pytest.raises(ValueError):
        bounded_mean_interval([float("nan")])


def test_graded_metric_summary_uses_the_bounded_interval():
    from ftorch.eval.stats import mean_interval

    low, high = mean_interval([0.0] * 40, binary=False)
    assert low == 0.0 and high == pytest.approx(0.0876, abs=1e-4)
    assert mean_interval([], binary=False) == (0.0, 1.0)
    assert mean_interval([1.0] * 40, binary=True) == wilson_interval(40, 40)
    low, high = mean_interval([2.0, 4.0], binary=False)  # not bounded: the normal approximation, unclamped
    assert low < 3.0 < high and high > 1.0


def test_paired_difference_interval_hand_computed():
    # 10 pairs, a fails and b passes on all: δ = 1, φ = 0 (empty margins), Wilson 10/10 lower 10/13.8416 = 0.72246,
    # 0/10 upper 0.27754: lower = 1 - sqrt(2 · 0.27754²) = 0.6075, upper = 1
    low, high = paired_difference_interval([False] * 10, [True] * 10)
    assert (round(low, 3), high) == (0.607, 1.0)
    # no discordant pair: δ = 0 but the interval is not a point (±8.8 points on 40 pairs all passing)
    low, high = paired_difference_interval([True] * 40, [True] * 40)
    assert low == pytest.approx(-0.0876, abs=1e-4) and high == pytest.approx(0.0876, abs=1e-4)
    assert paired_difference_interval([], []) == (-1.0, 1.0)
    with pytest.raises(ValueError):
        paired_difference_interval([True], [True, False])


def test_paired_difference_interval_contains_the_difference_and_mirrors():
    a = [True] * 145 + [False] * 55        # 72.5%
    b = [True] * 145 + [True] * 55         # 100%
    low, high = paired_difference_interval(a, b)
    assert 0 < low < 0.275 < high <= 1
    back = paired_difference_interval(b, a)
    assert back == pytest.approx((-high, -low))
    mixed_a = [True, False, True, True, False, False, True, False] * 5
    mixed_b = [True, True, False, True, True, False, True, True] * 5
    low, high = paired_difference_interval(mixed_a, mixed_b)
    diff = (sum(mixed_b) - sum(mixed_a)) / len(mixed_a)
    assert -1 <= low < diff < high <= 1
