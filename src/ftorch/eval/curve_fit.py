"""The learning curve's arithmetic, free of models and files: fit a saturating curve (an inverse power law,
score(n) = a - b * (n / n_max) ** -c) to the headline metric at nested training sizes, resample the test examples to
put an interval on it (a paired bootstrap: the same resampled examples for every size, each resample refitted),
project 2x and 4x the data, find where the curve would cross the strongest prompt, and say it in one sentence.

Scores are fractions in [0, 1] (the headline metrics are); "points" are percentage points. With fewer than three
sizes, or scores that fall as the data grows, the curve is "inconclusive": nothing is extrapolated."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_POINTS = 3
FLAT_POINTS = 2.0  # a projected gain at 2x below this many points is "flat"
FACTORS = (2.0, 4.0)


@dataclass(frozen=True)
class PowerLaw:
    """score(n) = a - b * (n / n_max) ** -c: a is the ceiling the curve levels off at."""

    a: float
    b: float
    c: float
    n_max: float

    def predict(self, n: float) -> float:
        return self.a - self.b * (n / self.n_max) ** (-self.c)

    def reaches(self, target: float) -> float | None:
        """The data size at which the curve reaches `target` (below n_max when it already has), or None when it
        levels off below it."""
        if self.b <= 0:
            return 0.0 if self.a >= target else None
        if self.a <= target:
            return None
        return self.n_max * (self.b / (self.a - target)) ** (1.0 / self.c)


@dataclass(frozen=True)
class Projection:
    factor: float  # times the data trained on at the largest size
    size: float  # examples
    value: float  # the fitted score there
    low: float | None  # 95% bootstrap interval of the score
    high: float | None
    gain: float  # value minus the fitted score at the largest size (a fraction, not points)
    gain_low: float | None
    gain_high: float | None


@dataclass
class Curve:
    sizes: list[int]
    scores: list[float]  # the headline mean at each size
    status: str  # "fitted" or "inconclusive"
    reason: str = ""
    law: PowerLaw | None = None
    projections: list[Projection] = field(default_factory=list)
    baseline: float | None = None  # the strongest prompt's score on the same test split
    crossing: float | None = None  # examples at which the fit reaches the baseline (None: it does not)
    crossing_share: float | None = None  # share of bootstrap refits that reach the baseline within 100x the data
    resamples: int = 0

    def projection(self, factor: float) -> Projection | None:
        return next((p for p in self.projections if p.factor == factor), None)


def fit_power_law(sizes: Sequence[float], scores: Sequence[float], ceiling: float = 1.0,
                  start: PowerLaw | None = None) -> PowerLaw:
    """Least squares (scipy.optimize.curve_fit) with a <= ceiling, b >= 0 and c in [0.05, 5]: a curve that
    rises and levels off, or is flat (b = 0). Raises RuntimeError when the optimiser does not converge."""
    import numpy as np
    from scipy.optimize import curve_fit  # type: ignore[import-untyped]  # scipy ships no stubs

    n_max = float(max(sizes))
    x = np.asarray(sizes, dtype=float) / n_max
    y = np.asarray(scores, dtype=float)
    low_a = min(float(y.min()), ceiling) - 1.0
    a0 = min(ceiling, float(y.max()) + 0.02)
    c0 = 0.5
    b0 = max(1e-3, (a0 - float(y[int(np.argmin(x))])) * float(x.min()) ** c0)
    guess = [max(low_a + 1e-6, a0), b0, c0]
    if start is not None:  # a bootstrap refit starts from the fit it perturbs: several times faster
        guess = [min(max(start.a, low_a + 1e-6), ceiling), max(start.b, 0.0), min(max(start.c, 0.05), 5.0)]

    def law(xs, a, b, c):
        return a - b * np.power(xs, -c)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OptimizeWarning on an exact fit through three points
        params, _ = curve_fit(law, x, y, p0=guess,
                              bounds=([low_a, 0.0, 0.05], [ceiling, np.inf, 5.0]), maxfev=20000)
    a, b, c = (float(v) for v in params)
    return PowerLaw(a, b, c, n_max)


def monotone(scores: Sequence[float]) -> bool:
    """Non-decreasing as the data grows."""
    return all(later >= earlier for earlier, later in zip(scores, scores[1:]))


def learning_curve(sizes: Sequence[int], per_example: Sequence[Sequence[float]], baseline: float | None = None,
                   *, resamples: int = 400, seed: int = 0, ceiling: float = 1.0) -> Curve:
    """The curve from each size's per-example headline scores (the same test examples, in the same order, at
    every size), sorted by size. `baseline`: the strongest prompt's mean on those examples."""
    import numpy as np

    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    sizes = [int(sizes[i]) for i in order]
    matrix = [np.asarray(per_example[i], dtype=float) for i in order]
    if len({len(row) for row in matrix}) > 1:
        raise ValueError("every size must be scored on the same test examples")
    scores = [float(row.mean()) if len(row) else float("nan") for row in matrix]
    curve = Curve(sizes, scores, "inconclusive", baseline=baseline)
    if len(sizes) < MIN_POINTS or len(set(sizes)) < len(sizes):
        curve.reason = f"{len(set(sizes))} training size(s); a curve needs at least {MIN_POINTS}"
        return curve
    if any(math.isnan(s) for s in scores):
        curve.reason = "a size has no scored test examples"
        return curve
    if not monotone(scores):
        curve.reason = "the score does not rise with the data (" + ", ".join(
            f"{n}: {100 * s:.1f}%" for n, s in zip(sizes, scores)) + "): the differences are noise or overfitting"
        return curve
    try:
        law = fit_power_law(sizes, scores, ceiling)
    except (RuntimeError, ValueError) as exc:
        curve.reason = f"the curve could not be fitted ({exc})"
        return curve
    curve.status, curve.law = "fitted", law
    n_max = law.n_max
    rng = np.random.default_rng(seed)
    stack = np.vstack(matrix)  # sizes x examples
    m = stack.shape[1]
    values: dict[float, list[float]] = {f: [] for f in FACTORS}
    gains: dict[float, list[float]] = {f: [] for f in FACTORS}
    reached = 0
    fitted = 0
    for _ in range(resamples):
        picks = rng.integers(0, m, size=m)
        means = stack[:, picks].mean(axis=1)
        try:
            refit = fit_power_law(sizes, means.tolist(), ceiling, start=law)
        except (RuntimeError, ValueError):
            continue
        fitted += 1
        now = refit.predict(n_max)
        for factor in FACTORS:
            value = refit.predict(factor * n_max)
            values[factor].append(value)
            gains[factor].append(value - now)
        if baseline is not None:
            where = refit.reaches(baseline)
            reached += where is not None and where <= 100 * n_max
    curve.resamples = fitted
    now = law.predict(n_max)
    for factor in FACTORS:
        low, high = _interval(values[factor], fitted, resamples)
        gain_low, gain_high = _interval(gains[factor], fitted, resamples)
        value = law.predict(factor * n_max)
        curve.projections.append(Projection(factor, factor * n_max, value, low, high, value - now, gain_low,
                                            gain_high))
    if baseline is not None:
        curve.crossing = law.reaches(baseline)
        curve.crossing_share = reached / fitted if fitted else None
    return curve


def _interval(samples: list[float], fitted: int, asked: int) -> tuple[float | None, float | None]:
    """The 2.5th and 97.5th percentiles, or (None, None) when fewer than half the resamples could be refitted."""
    import numpy as np

    if not samples or fitted < asked / 2:
        return None, None
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def _points(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"
    return text.replace("-", "\u2212")


def _ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "no interval: too few resamples could be refitted"
    return f"95% CI {_points(low)} to {_points(high)}"


def sentence(curve: Curve) -> str:
    """What the curve says about labelling more data, in one sentence for the report and the verdict."""
    if curve.status != "fitted" or curve.law is None:
        return f"the learning curve is inconclusive: {curve.reason}"
    two, four = curve.projection(2.0), curve.projection(4.0)
    assert two is not None and four is not None
    at_two = f"{_points(two.gain)} points projected at 2\u00d7, {_ci(two.gain_low, two.gain_high)}"
    at_four = f"{_points(four.gain)} at 4\u00d7"
    baseline = curve.baseline
    now = curve.scores[-1]
    if baseline is not None and now < baseline:
        target = f"the strongest prompt ({100 * baseline:.1f}%)"
        if curve.crossing is not None:
            share = (f"; {100 * curve.crossing_share:.0f}% of resampled curves get there within 100\u00d7 the data"
                     if curve.crossing_share is not None else "")
            return (f"more data could change this verdict: the curve reaches {target} at about "
                    f"{curve.crossing:,.0f} training examples ({curve.crossing / curve.law.n_max:.1f}\u00d7 the data; "
                    f"{at_two}{share})")
        return (f"more data is unlikely to change this verdict: the curve levels off at "
                f"{100 * curve.law.a:.1f}%, below {target} ({at_two}; {at_four})")
    if 100 * two.gain < FLAT_POINTS:
        return f"more data is unlikely to change this verdict: the curve is flat ({at_two})"
    return f"more data is likely to raise the score further ({at_two}; {at_four})"
