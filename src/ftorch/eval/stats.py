"""Small, dependency-free statistics for comparing evaluation results (stdlib ``math`` and ``random`` only).

* :func:`wilson_interval` — confidence interval for a rate (e.g. refusal rate, accuracy).
* :func:`bounded_mean_interval` — confidence interval for the mean of scores bounded in [0, 1] (chrF, field
  accuracy, a judge's score): honest at 0 and 1, never a single point.
* :func:`paired_difference_interval` — confidence interval for the difference of two paired pass rates.
* :func:`paired_bootstrap` — paired comparison of two systems' per-item scores.
* :func:`mcnemar` — paired comparison of two systems' per-item pass/fail outcomes.
* :func:`too_small` — the sample-size guard used to mark results as inconclusive.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

EXACT_MCNEMAR_MAX = 1000  # above this many discordant pairs, use the chi-square approximation


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    With ``p = successes / n``::

        centre    = (p + z²/(2n)) / (1 + z²/n)
        halfwidth = z / (1 + z²/n) * sqrt(p(1 - p)/n + z²/(4n²))
        interval  = (centre - halfwidth, centre + halfwidth), clamped to [0, 1]

    ``z = 1.96`` gives a 95% interval. Unlike the normal ("Wald") interval it stays inside [0, 1] and is not
    degenerate at 0 or n successes. ``n == 0`` carries no information and returns ``(0.0, 1.0)``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def bounded_mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Confidence interval for the mean of scores bounded in [0, 1]: the Wilson score interval evaluated at the
    sample mean ``m`` with the sample size ``n`` (``wilson_interval``'s formula with ``p = m``).

    Why this one. A normal ("Wald") interval ``m ± z·s/√n`` collapses to a point whenever the sample has no
    spread — every item scored 0, as an untrained system often does on 40 examples, prints "0.0–0.0%", which
    claims certainty the data cannot give. A percentile bootstrap collapses the same way. For a variable ``X``
    in [0, 1], ``X² <= X``, so ``Var(X) <= μ(1 - μ)``, with equality exactly when ``X`` is 0/1. The Wilson interval
    is the set of ``μ`` that a score test with that largest possible variance does not reject,
    ``|m - μ| <= z·sqrt(μ(1 - μ)/n)``; since the true variance is no larger, the interval is conservative (at
    least nominal coverage, up to the normal approximation of the mean) for every [0, 1]-bounded metric, and
    it is exactly the usual Wilson interval for 0/1 metrics, so binary and graded metrics read the same way.
    It stays inside [0, 1] and has positive width for every ``n >= 1``: 40 zeros give (0, 8.8%), 40 ones
    (91.2%, 1). The price is width for graded metrics with little spread (it ignores that spread); which
    system is better is decided by the paired tests, not by these intervals. ``n == 0`` gives ``(0.0, 1.0)``.
    Values outside [0, 1] (or NaN) raise ``ValueError``.
    """
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    if any(not 0.0 <= v <= 1.0 for v in values):  # also catches NaN
        raise ValueError("bounded_mean_interval needs values in [0, 1]")
    m = math.fsum(values) / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (m + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(m * (1.0 - m) / n + z2 / (4.0 * n * n))
    low = 0.0 if m <= 0.0 else max(0.0, centre - half)
    high = 1.0 if m >= 1.0 else min(1.0, centre + half)
    return (low, high)


def paired_difference_interval(a: Sequence[bool], b: Sequence[bool], z: float = 1.96) -> tuple[float, float]:
    """Confidence interval for ``rate(b) - rate(a)`` when both systems are judged pass/fail on the same items:
    Newcombe's hybrid score interval for paired proportions (Newcombe 1998, *Stat. Med.* 17:2635, method 10).

    With the 2×2 table ``A`` (both pass), ``B`` (b passes only), ``C`` (a passes only), ``D`` (both fail), rates
    ``p_b = (A + B)/n`` and ``p_a = (A + C)/n`` with Wilson intervals ``(l_b, u_b)``, ``(l_a, u_a)``, and the
    correlation ``φ = (A·D - B·C) / sqrt((A+B)(C+D)(A+C)(B+D))`` (0 when that product is 0)::

        δ = p_b - p_a
        lower = δ - sqrt((p_b - l_b)² - 2φ(p_b - l_b)(u_a - p_a) + (u_a - p_a)²)
        upper = δ + sqrt((u_b - p_b)² - 2φ(u_b - p_b)(p_a - l_a) + (p_a - l_a)²)

    Unlike the Wald interval ``δ ± z·se`` it does not collapse to a point when no pair is discordant (40 pairs
    all passing give about ±8.8 points) and it stays inside [-1, 1]. ``n == 0`` gives ``(-1.0, 1.0)``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return (-1.0, 1.0)
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_b = sum(1 for x, y in zip(a, b) if not x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    neither = n - both - only_b - only_a
    p_b, p_a = (both + only_b) / n, (both + only_a) / n
    l_b, u_b = wilson_interval(both + only_b, n, z)
    l_a, u_a = wilson_interval(both + only_a, n, z)
    product = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    phi = (both * neither - only_b * only_a) / math.sqrt(product) if product > 0 else 0.0
    delta = p_b - p_a
    down = math.sqrt(max(0.0, (p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2))
    up = math.sqrt(max(0.0, (u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2))
    return (max(-1.0, delta - down), min(1.0, delta + up))


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default, "type 7") of already-sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def paired_bootstrap(a: list[float], b: list[float], iterations: int = 2000, seed: int = 0) -> dict:
    """Paired bootstrap of the mean difference ``b - a`` over items scored by both systems.

    With per-item differences ``d_i = b_i - a_i`` and observed mean ``d̄``, draw ``iterations`` resamples of the
    n items with replacement (``random.Random(seed)``) and record each resample mean ``d̄*``. Then:

    * ``ci`` — the 95% percentile interval: the 2.5th and 97.5th percentiles of the ``d̄*``.
    * ``p_value`` — two-sided, from the bootstrap distribution shifted to the null of no difference:
      ``(1 + #{|d̄* - d̄| >= |d̄|}) / (iterations + 1)``. This is an estimate; its resolution is
      ``1 / (iterations + 1)``.

    Returns ``{"mean_diff", "ci", "p_value", "n", "iterations", "seed"}``. Positive ``mean_diff`` means ``b``
    scored higher. The same inputs and seed always give the same result.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("paired_bootstrap needs at least one pair")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    n = len(a)
    diffs = [float(y) - float(x) for x, y in zip(a, b)]
    observed = math.fsum(diffs) / n
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(diffs, k=n)) / n for _ in range(iterations))
    extreme = sum(1 for m in means if abs(m - observed) >= abs(observed) - 1e-12)
    return {
        "mean_diff": observed,
        "ci": (_quantile(means, 0.025), _quantile(means, 0.975)),
        "p_value": min(1.0, (1 + extreme) / (iterations + 1)),
        "n": n,
        "iterations": iterations,
        "seed": seed,
    }


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided sign-test p-value: ``min(1, 2 * sum_{i<=k} C(n, i) / 2**n)`` with ``k = min(b01, b10)``."""
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar(a: list[bool], b: list[bool]) -> dict:
    """McNemar's test for two systems judged pass/fail on the same items (``a[i]``, ``b[i]`` True = pass).

    Discordant counts: ``b01`` = items where A fails and B passes, ``b10`` = items where A passes and B fails
    (concordant items carry no information about the difference). Under the null both kinds are equally
    likely, so ``b01 ~ Binomial(b01 + b10, 1/2)``:

    * exact (``b01 + b10 <= 1000``): ``p = min(1, 2 * sum_{i=0..min(b01,b10)} C(n, i) / 2**n)``, n = b01 + b10;
    * otherwise chi-square with continuity correction, 1 degree of freedom:
      ``X² = (|b01 - b10| - 1)² / (b01 + b10)``, ``p = erfc(sqrt(X² / 2))``.

    ``better`` is ``"b"`` when ``b01 > b10``, ``"a"`` when ``b10 > b01``, else ``"tie"`` — read it together
    with ``p_value``. Returns ``{"b01", "b10", "n", "p_value", "method", "statistic", "better"}`` where
    ``statistic`` is X² for the chi-square method and None for the exact one.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    b01 = sum(1 for x, y in zip(a, b) if not x and y)
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    discordant = b01 + b10
    statistic: float | None = None
    if discordant == 0:
        method, p_value = "exact", 1.0
    elif discordant <= EXACT_MCNEMAR_MAX:
        method, p_value = "exact", _binomial_two_sided(min(b01, b10), discordant)
    else:
        method = "chi2_cc"
        statistic = max(0, abs(b01 - b10) - 1) ** 2 / discordant
        p_value = math.erfc(math.sqrt(statistic / 2))
    better = "b" if b01 > b10 else "a" if b10 > b01 else "tie"
    return {"b01": b01, "b10": b10, "n": len(a), "p_value": p_value, "method": method,
            "statistic": statistic, "better": better}


def too_small(n: int, minimum: int = 30) -> bool:
    """True when ``n < minimum``: too few items for a rate or comparison to be reported as conclusive."""
    return n < minimum


def mean_interval(values: list[float], binary: bool) -> tuple[float, float]:
    """95% interval for a mean. Every ftorch metric lies in [0, 1]: Wilson for pass/fail metrics, and its
    extension to bounded scores (`bounded_mean_interval`, conservative, never a single point) for graded
    ones. A metric outside [0, 1] falls back to the normal approximation."""
    if not values:
        return (0.0, 1.0)
    if binary:
        return wilson_interval(int(round(sum(values))), len(values))
    if all(0.0 <= v <= 1.0 for v in values):
        return bounded_mean_interval(values)
    mean = statistics.fmean(values)
    half = 1.96 * (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)
    return (mean - half, mean + half)
