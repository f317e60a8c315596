"""The learning curve's arithmetic on synthetic curves: a known power law is recovered and projected, a flat
curve is called flat, a curve that reaches the prompt says where, and too few or falling points are inconclusive."""

import numpy as np
import pytest

from ftorch.eval.curve_fit import PowerLaw, fit_power_law, learning_curve, monotone, sentence

SIZES = [60, 120, 240]


def scores_from(law: PowerLaw, m: int, seed: int = 0) -> list[np.ndarray]:
    """Per-example pass/fail scores whose means follow `law` exactly (m examples, the first k pass)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        k = round(law.predict(n) * m)
        row = np.zeros(m)
        row[rng.permutation(m)[:k]] = 1.0
        rows.append(row)
    return rows


def test_a_known_power_law_is_recovered_and_projected():
    truth = PowerLaw(a=0.9, b=0.2, c=0.8, n_max=240)
    fitted = fit_power_law(SIZES, [truth.predict(n) for n in SIZES])
    for n in (60, 240, 480, 960):
        assert fitted.predict(n) == pytest.approx(truth.predict(n), abs=1e-4)


def test_projection_interval_contains_the_truth_and_gain_is_positive():
    truth = PowerLaw(a=0.9, b=0.2, c=0.8, n_max=240)
    curve = learning_curve(SIZES, scores_from(truth, 2000), resamples=200)
    assert curve.status == "fitted" and curve.resamples >= 100
    two = curve.projection(2.0)
    assert two is not None and two.low is not None and two.high is not None
    assert two.low <= truth.predict(480) <= two.high
    assert two.gain == pytest.approx(truth.predict(480) - truth.predict(240), abs=0.01)
    assert two.gain_low is not None and two.gain_low > 0
    assert "likely to raise" in sentence(curve) and "points projected at 2\u00d7" in sentence(curve)


def test_a_flat_curve_is_called_flat_with_its_interval():
    rows = [np.array([1.0] * 80 + [0.0] * 20)] * 3
    curve = learning_curve(SIZES, rows, baseline=0.8, resamples=100)
    assert curve.status == "fitted"
    text = sentence(curve)
    assert text.startswith("more data is unlikely to change this verdict: the curve is flat (+0.0 points")
    assert "95% CI" in text


def test_crossing_the_prompt_is_located():
    truth = PowerLaw(a=0.95, b=0.25, c=0.5, n_max=240)
    baseline = 0.8  # truth reaches it at 240 * (0.25 / 0.15) ** 2 = 667 examples
    curve = learning_curve(SIZES, scores_from(truth, 4000), baseline=baseline, resamples=100)
    assert curve.crossing == pytest.approx(667, rel=0.1)
    assert sentence(curve).startswith("more data could change this verdict: the curve reaches the strongest prompt")
    assert curve.crossing_share is not None and curve.crossing_share > 0.5


def test_a_curve_that_levels_off_below_the_prompt_says_so():
    truth = PowerLaw(a=0.6, b=0.1, c=1.0, n_max=240)
    curve = learning_curve(SIZES, scores_from(truth, 4000), baseline=0.9, resamples=50)
    assert curve.crossing is None
    assert "levels off at 60" in sentence(curve) and "below the strongest prompt (90.0%)" in sentence(curve)


def test_too_few_points_and_falling_curves_are_inconclusive():
    rows = [np.array([0.0, 1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0])]
    assert learning_curve(SIZES[:2], rows[:2]).status == "inconclusive"
    falling = learning_curve(SIZES, rows)
    assert falling.status == "inconclusive" and falling.law is None and not falling.projections
    assert sentence(falling).startswith("the learning curve is inconclusive: the score does not rise")
    assert "a curve needs at least 3" in sentence(learning_curve(SIZES[:2], rows[:2]))


def test_sizes_are_sorted_and_need_the_same_examples():
    rows = [np.ones(5) * 0.8, np.ones(5) * 0.5, np.ones(5) * 0.7]
    curve = learning_curve([240, 60, 120], rows, resamples=20)
    assert curve.sizes == SIZES and curve.scores == pytest.approx([0.5, 0.7, 0.8])
    with pytest.raises(ValueError):
        learning_curve(SIZES, [np.ones(5), np.ones(4), np.ones(5)])
    assert monotone([0.1, 0.1, 0.2]) and not monotone([0.2, 0.1])
