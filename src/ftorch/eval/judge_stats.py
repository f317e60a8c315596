"""Statistics that stay valid with an imperfect judge.

An LLM judge labels every test example cheaply but with errors and biases; a person grades a small sample.
Prediction-powered inference (Angelopoulos et al., Science 2023; PPI++, Angelopoulos, Duchi and Zrnic 2024)
combines the two: the judge's mean on all examples, corrected by the judge's average error on the graded
sample. The interval stays valid whatever the judge's quality; a good judge makes it narrower than the human
grades alone, a useless one makes it no wider (the power-tuning weight `lam` falls to 0).

For the mean of Y (a human label: +1 tuned better, 0 tie, -1 prompted better; or a per-example score
difference), with n human-graded examples (Y_i, Yhat_i) and N judge-only examples (Yhat_j):

    theta(lam) = lam * mean(Yhat_j) + mean(Y_i - lam * Yhat_i)
    Var        = lam^2 * var0(Yhat_j) / N + var0(Y_i - lam * Yhat_i) / n        (var0: divided by the count)
    lam*       = cov0(Y_i, Yhat_i) / ((1 + n / N) * var(all Yhat)), clipped to [0, 1]

and the 95% interval is theta +- q * sqrt(Var). With q = 1.96 this is exactly ppi_py's `ppi_mean_ci` with
`lam=None` (checked against ppi-python 0.2.3 in tests/eval/test_judge_stats.py); ftorch uses Student's t
quantile with n - 1 degrees of freedom for q, a small-sample correction: with tens of human grades, and lam
tuned on those same grades, the normal quantile covers a little less than 95% (the simulation test shows it).
Measured in that simulation (1,000 seeded runs, 400 judge-only labels, three-way labels): with 80 human grades
coverage is 94-96% for judges agreeing 70-95% with people, biased or not; with 60 grades it drops to 93%, as
the human-only interval's does.
ppi-python itself is not a dependency (it pulls numba, statsmodels and scikit-learn and ships a top-level
`tests` package).

Agreement between judge and person: raw agreement with a Wilson interval, and Cohen's kappa with a seeded
bootstrap interval."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .stats import wilson_interval

Z95 = 1.959963984540054


def t95(n: int) -> float:
    """The two-sided 95% quantile of Student's t with n - 1 degrees of freedom (n >= 2)."""
    from scipy.stats import t  # type: ignore[import-untyped]  # scipy ships no stubs

    return float(t.ppf(0.975, n - 1))


@dataclass(frozen=True)
class MeanEstimate:
    """A mean with its 95% interval: how it was estimated, from how many human and judge-only labels."""

    method: str  # "ppi++", "human only" or "judge only"
    estimate: float | None
    ci: tuple[float, float] | None
    n_human: int
    n_judge: int
    lam: float | None = None  # PPI++'s weight on the judge (0: the judge adds nothing; 1: classic PPI)

    @property
    def width(self) -> float | None:
        return None if self.ci is None else self.ci[1] - self.ci[0]

    def excludes_zero(self) -> bool:
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _var(values: Sequence[float], ddof: int = 1) -> float:
    """Variance, divided by (count - ddof); 0 where undefined."""
    if len(values) <= ddof:
        return 0.0
    m = _mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - ddof)


def _cov0(a: Sequence[float], b: Sequence[float]) -> float:
    ma, mb = _mean(a), _mean(b)
    return math.fsum((x - ma) * (y - mb) for x, y in zip(a, b)) / len(a)


def ppi_mean(human: Sequence[float], judge_on_graded: Sequence[float], judge_on_rest: Sequence[float],
             q: float | None = None) -> MeanEstimate:
    """PPI++ estimate of the mean of the human label over the whole test set (see the module docstring).
    `judge_on_graded[i]` is the judge's label of the example a person graded as `human[i]`; `judge_on_rest`
    the judge's labels of the examples nobody graded. Without human grades there is no valid estimate.
    `q`: the interval's quantile (default Student's t at n - 1; 1.96 gives ppi_py's interval exactly)."""
    n, big_n = len(human), len(judge_on_rest)
    if len(judge_on_graded) != n:
        raise ValueError("human and judge_on_graded must label the same examples")
    if n < 2:
        return MeanEstimate("ppi++", None, None, n, big_n)
    if big_n == 0:
        return human_mean(human, q)
    q = t95(n) if q is None else q
    var_judge = _var([*judge_on_graded, *judge_on_rest])
    lam = 0.0 if var_judge == 0 else _cov0(human, judge_on_graded) / ((1 + n / big_n) * var_judge)
    lam = min(1.0, max(0.0, lam))
    rectifier = [y - lam * yhat for y, yhat in zip(human, judge_on_graded)]
    estimate = lam * _mean(judge_on_rest) + _mean(rectifier)
    half = q * math.sqrt(lam ** 2 * _var(judge_on_rest, 0) / big_n + _var(rectifier, 0) / n)
    return MeanEstimate("ppi++", estimate, (estimate - half, estimate + half), n, big_n, lam)


def human_mean(human: Sequence[float], q: float | None = None) -> MeanEstimate:
    """The mean of the human labels alone, with its t interval (the baseline PPI beats)."""
    n = len(human)
    if n < 2:
        return MeanEstimate("human only", _mean(human) if n else None, None, n, 0)
    estimate = _mean(human)
    half = (t95(n) if q is None else q) * math.sqrt(_var(human, 0) / n)  # as ppi_mean at lam = 0
    return MeanEstimate("human only", estimate, (estimate - half, estimate + half), n, 0)


def judge_mean(judge: Sequence[float], z: float = Z95) -> MeanEstimate:
    """The judge's own mean with its sampling interval: what an uncalibrated judge claims. Its interval ignores
    the judge's errors, so it is shown as the judge's figure, never as evidence."""
    n = len(judge)
    if n < 2:
        return MeanEstimate("judge only", _mean(judge) if n else None, None, 0, n)
    estimate = _mean(judge)
    half = z * math.sqrt(_var(judge) / n)
    return MeanEstimate("judge only", estimate, (estimate - half, estimate + half), 0, n)


@dataclass(frozen=True)
class Agreement:
    """How often the judge gives the person's label, and Cohen's kappa (agreement beyond chance)."""

    n: int
    raw: float | None
    raw_ci: tuple[float, float] | None
    kappa: float | None
    kappa_ci: tuple[float, float] | None


def cohen_kappa(judge: Sequence[Hashable], human: Sequence[Hashable]) -> float | None:
    """(p_o - p_e) / (1 - p_e); None when chance agreement is total (both always give one same label)."""
    n = len(judge)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(judge, human)) / n
    counts_j, counts_h = Counter(judge), Counter(human)
    expected = sum(counts_j[label] * counts_h[label] for label in counts_j) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(judge: Sequence[Hashable], human: Sequence[Hashable], *, resamples: int = 2000,
              seed: int = 0) -> Agreement:
    """Raw agreement (Wilson interval) and Cohen's kappa (percentile bootstrap over examples, seeded)."""
    if len(judge) != len(human):
        raise ValueError("judge and human must label the same examples")
    n = len(judge)
    if n == 0:
        return Agreement(0, None, None, None, None)
    same = sum(a == b for a, b in zip(judge, human))
    kappa = cohen_kappa(judge, human)
    rng = random.Random(seed)
    pairs = list(zip(judge, human))
    draws = []
    for _ in range(resamples):
        sample = rng.choices(pairs, k=n)
        value = cohen_kappa([a for a, _ in sample], [b for _, b in sample])
        if value is not None:
            draws.append(value)
    draws.sort()
    kappa_ci = (draws[int(0.025 * (len(draws) - 1))], draws[int(math.ceil(0.975 * (len(draws) - 1)))]) \
        if len(draws) >= 20 else None
    return Agreement(n, same / n, wilson_interval(same, n), kappa, kappa_ci)


def grades_for_width(human: Sequence[float], judge_on_graded: Sequence[float], judge_on_rest: Sequence[float],
                     target_width: float) -> int | None:
    """How many more human grades would bring the PPI interval to `target_width` (full width), at the current
    variances: None before two grades exist, 0 when it is already that narrow."""
    current = ppi_mean(human, judge_on_graded, judge_on_rest)
    if current.width is None or current.lam is None:
        return None
    if current.width <= target_width:
        return 0
    n, big_n, lam = len(human), len(judge_on_rest), current.lam
    judge_part = lam ** 2 * _var(judge_on_rest, 0) / big_n if big_n else 0.0
    rectifier = _var([y - lam * yhat for y, yhat in zip(human, judge_on_graded)], 0)
    room = (target_width / (2 * Z95)) ** 2 - judge_part
    if room <= 0 or rectifier == 0:
        return None  # the judge-only part alone is wider than the target
    return max(0, math.ceil(rectifier / room) - n)
