"""Statistics with an imperfect judge: PPI++ checked against ppi-python's own numbers, a coverage simulation
with synthetic judges of known agreement (with and without biased errors), and agreement/kappa by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ftorch.eval.judge_stats import agreement, cohen_kappa, grades_for_width, human_mean, judge_mean, ppi_mean

OUTCOMES = np.array([1, 0, -1])  # tuned better, tie, prompted better
TRUTH_P = np.array([0.45, 0.25, 0.30])
TRUE_DIFFERENCE = float(OUTCOMES @ TRUTH_P)  # 0.15


def simulate(agreement_rate: float, biased: bool, seed: int, graded: int = 80, rest: int = 400):
    """Human labels drawn from TRUTH_P; the judge gives the human label with probability `agreement_rate`,
    else another label: either of the other two at random, or (biased) 'tuned better' whenever that is wrong
    (else 'tie'), as a judge that favours one position or the longer answer would."""
    rng = np.random.default_rng(seed)
    size = graded + rest
    human = rng.choice(OUTCOMES, size=size, p=TRUTH_P)
    wrong = rng.random(size) >= agreement_rate
    if biased:
        mistaken = np.where(human == 1, 0, 1)
    else:  # the label 1 or 2 steps along the cycle (1, 0, -1): never the human's own
        step = rng.integers(1, 3, size=size)
        mistaken = OUTCOMES[(np.searchsorted(-OUTCOMES, -human) + step) % 3]
    judge = np.where(wrong, mistaken, human)
    return human[:graded].tolist(), judge[:graded].tolist(), judge[graded:].tolist()


@pytest.mark.parametrize("rate", [0.70, 0.85, 0.95])
@pytest.mark.parametrize("biased", [False, True])
def test_ppi_interval_covers_the_true_difference(rate, biased):
    covered, ppi_widths, human_widths, judge_covered = 0, [], [], 0
    for seed in range(1000):
        human, judge_graded, judge_rest = simulate(rate, biased, seed)
        ppi = ppi_mean(human, judge_graded, judge_rest)
        alone = human_mean(human)
        assert ppi.ci is not None and alone.ci is not None
        covered += ppi.ci[0] <= TRUE_DIFFERENCE <= ppi.ci[1]
        ppi_widths.append(ppi.width)
        human_widths.append(alone.width)
        judged = judge_mean(judge_graded + judge_rest)
        judge_covered += judged.ci is not None and judged.ci[0] <= TRUE_DIFFERENCE <= judged.ci[1]
    assert covered / 1000 >= 0.93, covered
    if rate >= 0.85:
        assert np.mean(ppi_widths) < np.mean(human_widths)
    if biased and rate == 0.70:  # the judge's own interval is not valid: its errors lean one way
        assert judge_covered / 1000 < 0.5, judge_covered


# ppi_py 0.2.3's ppi_mean_ci(Y, Yhat, Yhat_unlabeled, alpha=0.05) (lam tuned) on these data gave the numbers
# below (run in a separate virtual environment with ppi-python and its dependencies; see the module docstring)
PPI_PY_Y = [1, 0, -1, 1, 1, 0, -1, 1, 0, 1, -1, 1]
PPI_PY_YHAT = [1, 1, -1, 1, 0, 0, -1, 1, 1, 1, -1, 0]
PPI_PY_UNLABELED = [1, 1, 0, -1, 1, 1, 0, 1, -1, 1, 1, 0, 0, 1, -1, 1, 1, 1, 0, -1]


PPI_PY_EXPECTED = (-0.07378964, 0.67047127)  # printed by ppi_py (8 digits)


def test_agrees_with_ppi_python():
    found = ppi_mean(PPI_PY_Y, PPI_PY_YHAT, PPI_PY_UNLABELED, q=1.959963984540054)
    assert found.ci == pytest.approx(PPI_PY_EXPECTED, abs=1e-8)


def test_no_judge_signal_falls_back_to_the_human_grades():
    human = [1, 0, -1, 1, 0, 1, 1, -1]
    constant_judge = [1] * 8
    found = ppi_mean(human, constant_judge, [1] * 50)
    assert found.lam == 0.0 and found.estimate == pytest.approx(human_mean(human).estimate)
    assert found.width == pytest.approx(human_mean(human).width)
    assert ppi_mean([1], [1], [1, 1]).ci is None  # one grade: no interval


def test_agreement_and_kappa_by_hand():
    judge = ["a", "a", "b", "b", "a", "b", "a", "a", "b", "b"]
    human = ["a", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    # p_o = 8/10; p_e = (6*5 + 4*5)... judge a=5 b=5, human a=5 b=5 -> p_e = 0.5; kappa = 0.6
    assert cohen_kappa(judge, human) == pytest.approx(0.6)
    found = agreement(judge, human)
    assert found.raw == 0.8 and found.kappa == pytest.approx(0.6)
    assert found.kappa_ci is not None and found.kappa_ci[0] < 0.6 < found.kappa_ci[1]
    assert cohen_kappa(["a"] * 4, ["a"] * 4) is None  # chance agreement is total: kappa undefined


def test_grades_needed_for_a_narrower_interval():
    human, judge_graded, judge_rest = simulate(0.85, False, seed=3, graded=30)
    width = ppi_mean(human, judge_graded, judge_rest).width
    assert width is not None
    more = grades_for_width(human, judge_graded, judge_rest, width / 2)
    assert more is not None and more > 30
    assert grades_for_width(human, judge_graded, judge_rest, width * 2) == 0
