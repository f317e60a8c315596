"""Coverage and width of the judged comparison's intervals (eval/judge_stats.py), by simulation: synthetic judges
that agree with people 70, 85 or 95% of the time, with errors at random or leaning towards the tuned answer (as a
position- or length-biased judge's would), 400 judge-only labels and 60/80/100 human grades, 1,000 seeded runs
each. Prints, per setting, how often the 95% interval covers the true mean preference (PPI++, human grades only,
judge only) and the mean widths. The figures in docs/evaluation.md come from this script.

    python bench/judge_coverage.py [--runs 1000]"""

from __future__ import annotations

import argparse

import numpy as np

from ftorch.eval.judge_stats import human_mean, judge_mean, ppi_mean

OUTCOMES = np.array([1, 0, -1])  # tuned better, tie, prompted better
TRUTH_P = np.array([0.45, 0.25, 0.30])
TRUE = float(OUTCOMES @ TRUTH_P)


def simulate(rate: float, biased: bool, seed: int, graded: int, rest: int = 400):
    rng = np.random.default_rng(seed)
    human = rng.choice(OUTCOMES, size=graded + rest, p=TRUTH_P)
    wrong = rng.random(graded + rest) >= rate
    if biased:
        mistaken = np.where(human == 1, 0, 1)
    else:
        step = rng.integers(1, 3, size=graded + rest)
        mistaken = OUTCOMES[(np.searchsorted(-OUTCOMES, -human) + step) % 3]
    judge = np.where(wrong, mistaken, human)
    return human[:graded].tolist(), judge[:graded].tolist(), judge[graded:].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    runs = parser.parse_args().runs
    print("| human grades | judge agreement | judge errors | PPI++ coverage | human-only coverage | judge-only "
          "coverage | PPI++ width | human-only width |")
    print("|---|---|---|---|---|---|---|---|")
    for graded in (60, 80, 100):
        for rate in (0.70, 0.85, 0.95):
            for biased in (False, True):
                cover = {"ppi": 0, "human": 0, "judge": 0}
                width = {"ppi": 0.0, "human": 0.0}
                for seed in range(runs):
                    human, judge_graded, judge_rest = simulate(rate, biased, seed, graded)
                    found = {"ppi": ppi_mean(human, judge_graded, judge_rest), "human": human_mean(human),
                             "judge": judge_mean(judge_graded + judge_rest)}
                    for name, estimate in found.items():
                        low, high = estimate.ci or (0.0, 0.0)
                        cover[name] += low <= TRUE <= high
                        if name in width:
                            width[name] += high - low
                print(f"| {graded} | {rate:.0%} | {'leaning to tuned' if biased else 'at random'} | "
                      f"{cover['ppi'] / runs:.1%} | {cover['human'] / runs:.1%} | {cover['judge'] / runs:.1%} | "
                      f"{width['ppi'] / runs:.3f} | {width['human'] / runs:.3f} |", flush=True)


if __name__ == "__main__":
    main()
