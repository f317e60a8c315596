"""The verdict and the report text, from hand-made report dicts shaped like the ones `runner.evaluate` builds
(tests/eval/test_suite.py builds real ones): every verdict case, and no NaN anywhere in what a person reads."""

from __future__ import annotations

import math
import re
from pathlib import Path

from ftorch.eval import report as render
from ftorch.eval.finished import summary_lines

from support.reports import real_run, score, significance, typed


def test_tie_says_what_fine_tuning_still_buys():
    text = render.verdict(typed(real_run()))
    assert text.startswith("Quality ties: field_accuracy 78.5% tuned against 76.0% prompted")
    assert "p=0.38" in text and "95% CI -3.1 to +8.1" in text
    assert "4.6× fewer prompt tokens per call (84 against 385)" in text
    assert "What fine-tuning still buys: 4.6× fewer prompt tokens per call (84 against 385); and significant gains "\
        "on json_schema (72.5% → 100.0%, p<0.001)." in text
    assert "field_accuracy (" not in text  # the headline is not repeated as a secondary metric
    assert "No measurable forgetting (instruction suite 55.0% → 55.0%; general-text perplexity 18.2 → 18.6, +2%)." \
        in text
    assert "not enough evidence" not in text
    assert len(re.findall(r"[.!?](?:\s|$)", text)) <= 5  # a few sentences, not a wall


def test_tie_with_prices_and_latency():
    text = render.verdict(typed(real_run(usd=(0.0126, 0.0578, 0.0252), latency=(0.30, 0.42, 0.31))))
    assert "$0.0326 less per 1,000 calls ($0.0252 against $0.0578)" in text
    assert "0.11 s less per call (0.31 s against 0.42 s)" in text
    # a fine-tuned model priced higher per token can cost more per call despite the shorter prompt
    dearer = render.verdict(typed(real_run(usd=(0.0126, 0.0578, 0.070))))
    assert "Against it: $0.0122 more per 1,000 calls ($0.0700 against $0.0578)" in dearer


def test_latency_as_a_dict_per_system():
    report = real_run()
    report["latency"] = {name: {"seconds_per_call": seconds}
                         for name, seconds in (("base", 0.2), ("prompted", 0.5), ("tuned", 0.25))}
    assert "0.25 s less per call (0.25 s against 0.50 s)" in render.verdict(typed(report))
    assert "| s / call |" in render.markdown(typed(report), Path("run"))


def test_tie_with_a_significantly_worse_secondary_metric():
    report = real_run()
    report["task"]["systems"]["tuned"]["json_schema"] = score(0.60)
    report["significance_by_metric"]["json_schema"]["tuned_vs_prompted"] = significance(0.01, -0.125, None,
                                                                                        "mcnemar (exact)")
    text = render.verdict(typed(report))
    assert "Against it: significant losses on json_schema (72.5% → 60.0%, p=0.01)." in text
    assert "significant gains" not in text


def test_tie_that_buys_nothing():
    report = real_run(tokens=(84.0, 84.0, 84.0))
    del report["significance_by_metric"]["json_schema"]
    assert "Fine-tuning buys nothing measurable over the few-shot prompt here." in render.verdict(typed(report))


def test_tuned_significantly_better():
    report = real_run()
    report["task"]["systems"]["tuned"]["field_accuracy"] = score(0.915)
    report["significance"]["tuned_vs_prompted"] = significance(0.0005, 0.155, (0.10, 0.21))
    text = render.verdict(typed(report))
    assert text.startswith("Fine-tuning beat prompting: field_accuracy 91.5% against 76.0% "
                           "(+15.5 points, 95% CI +10.0 to +21.0, p<0.001), with 4.6× fewer prompt "
                           "tokens per call (84 against 385).")
    assert "No measurable forgetting" in text


def test_prompting_significantly_better():
    report = real_run()
    report["task"]["systems"]["tuned"]["field_accuracy"] = score(0.62)
    report["significance"]["tuned_vs_prompted"] = significance(0.002, -0.14, (-0.22, -0.06))
    text = render.verdict(typed(report))
    assert text.startswith("Prompting wins: field_accuracy 76.0% prompted against 62.0% tuned (-14.0 points")
    assert "fine-tuning is not worth it" in text
    assert "The tuned model is cheaper per call (4.6× fewer prompt tokens per call (84 against 385)), but only at " \
        "that loss in quality." in text
    assert "still buys" not in text  # a model that loses on quality buys nothing with its savings
    same_prompt = real_run(tokens=(84.0, 84.0, 84.0))
    same_prompt["task"]["systems"]["tuned"]["field_accuracy"] = score(0.62)
    same_prompt["significance"]["tuned_vs_prompted"] = significance(0.002, -0.14)
    assert "It does not make calls cheaper either." in render.verdict(typed(same_prompt))


def test_a_model_that_fails_the_task_buys_nothing():
    """The held-out case: one training step, tuned 0.0% against the strongest prompt's 82.0%."""
    report = real_run()
    report["task"]["systems"]["tuned"]["field_accuracy"] = score(0.0)
    report["task"]["systems"]["prompted"]["field_accuracy"] = score(0.82)
    report["significance"]["tuned_vs_prompted"] = significance(1e-12, -0.82, (-0.9, -0.7))
    text = render.verdict(typed(report))
    assert text.startswith("Prompting wins: field_accuracy 82.0% prompted against 0.0% tuned")
    assert "still buys" not in text and "but only at that loss in quality" in text


def test_regression_names_quality_cost_and_forgetting():
    report = real_run(general=(0.60, 0.40), drift=(18.2, 24.0, 0.4),
                      regressions=["general instruction-following fell from 60.0% to 40.0% (allowed drop 5%)"])
    text = render.verdict(typed(report))
    assert text.startswith("The tuned model regressed: general instruction-following fell from 60.0% to 40.0%")
    assert "On the task itself it ties with prompting: field_accuracy 78.5% tuned against 76.0% prompted (p=0.38)" \
        in text
    assert "4.6× fewer prompt tokens per call" in text
    assert "Forgetting: instruction suite 60.0% → 40.0%; general-text perplexity 18.2 → 24.0, +32%." in text


def test_forgetting_small_drop_lm_eval_and_not_measured():
    report = real_run(general=(0.60, 0.57), drift=None)
    report["lm_eval"] = {"tasks": ["arc_easy"], "base": {"arc_easy": {"acc,none": 0.50}},
                         "tuned": {"arc_easy": {"acc,none": 0.40}}, "change": {"arc_easy": {"acc,none": -0.10}}}
    text = render.verdict(typed(report))
    assert "Forgetting: lm-eval arc_easy acc,none 0.500 → 0.400 (no measurable change: instruction suite 60.0% → " \
           "57.0%)." in text
    report["lm_eval"]["change"]["arc_easy"]["acc,none"] = -0.01
    assert ("No measurable forgetting (instruction suite 60.0% → 57.0%; lm-eval within 5%)."
            in render.verdict(typed(report)))
    bare = real_run(general=None, drift=None)
    assert render.verdict(typed(bare)).endswith(
        "Forgetting was not measured (no general suite, drift or lm-eval results).")


def test_unsolved_task_is_inconclusive():
    report = real_run(means={"base": {"field_accuracy": 0.0}, "prompted": {"field_accuracy": 0.0},
                             "tuned": {"field_accuracy": 0.02}},
                      tests={"field_accuracy": (significance(0.5, 0.02), significance(0.5, 0.02))},
                      held_out_loss={"base": {"loss": 2.5, "perplexity": 12.2, "tokens": 900},
                                     "tuned": {"loss": 1.1, "perplexity": 3.0, "tokens": 900}})
    text = render.verdict(typed(report))
    assert text.startswith("Inconclusive: no system solves the task (field_accuracy at most 2.0%)")
    assert "held-out loss (2.50 → 1.10)" in text


def test_older_report_without_per_metric_tests_or_difference_interval():
    report = real_run()
    del report["significance_by_metric"]
    report["significance"]["tuned_vs_prompted"] = {"test": "mcnemar (exact)", "p_value": 0.38, "b01": 10, "b10": 5}
    text = render.verdict(typed(report))
    assert "Quality ties: field_accuracy 78.5% tuned against 76.0% prompted (+2.5 points, p=0.38, n=200)" in text
    assert "json_schema" not in text
    render.markdown(typed(report), Path("run"))


NOT_A_NUMBER = re.compile(r"\b(nan|inf|-inf)\b", re.IGNORECASE)


def test_values_that_cannot_be_computed_print_as_n_a(tmp_path):
    nan = float("nan")
    report = real_run(drift=(nan, nan, nan),
                      held_out_loss={"base": {"loss": nan, "perplexity": nan, "tokens": 0},
                                     "tuned": {"loss": nan, "perplexity": nan, "tokens": 0}})
    report["task"]["systems"]["base"]["json_schema"] = score(None)
    report["significance_by_metric"]["json_schema"]["tuned_vs_base"] = {
        "test": "none", "reason": "no scored pairs", "p_value": None, "n": 0, "mean_diff": None, "ci": None}
    report["significance"]["tuned_vs_base"] = significance(nan, nan, (nan, nan))
    report["cost"]["base"]["prompt_tokens_per_call"] = nan
    report["cost"]["base"]["usd_per_1k_calls"] = nan
    report["general"]["tuned"]["prompt_level"] = nan
    report["lm_eval"] = {"tasks": ["t"], "base": {"t": {"acc": nan}}, "tuned": {"t": {"acc": 0.5}},
                         "change": {"t": {"acc": nan}}}
    report["safety"] = {name: {"harmful_compliance_rate": None, "harmful_compliance_ci": None, "n_redteam": 0,
                               "over_refusal_rate": nan, "over_refusal_ci": (nan, nan), "n_benign": 0,
                               "degenerate_share": nan} for name in ("base", "tuned")}
    report["verdict"] = render.verdict(typed(report))
    text = render.markdown(typed(report), Path("run"))
    lines = "\n".join(summary_lines(typed(report)))
    for shown in (report["verdict"], text, lines):
        assert not NOT_A_NUMBER.search(shown), shown
    assert "- held-out loss n/a (no assistant tokens)\n" in text
    assert "| n/a (no scored examples) |" in text and "| n/a (no scored pairs) |" in text
    assert "- tuned vs base: paired bootstrap, p n/a" in text
    assert "| base | 31.0% (25.0%–37.7%) | n/a (not computed) | n/a (not computed) |" in text
    render.plot(typed(report), tmp_path / "eval.png")
    assert (tmp_path / "eval.png").is_file()


def test_headline_that_could_not_be_computed():
    report = real_run()
    report["task"]["systems"]["tuned"]["field_accuracy"] = score(None)
    report["significance"]["tuned_vs_prompted"] = significance(None)
    report["verdict"] = render.verdict(typed(report))
    assert report["verdict"].startswith("Inconclusive: field_accuracy could not be computed for tuned")
    assert "tuned n/a (no scored examples)" in summary_lines(typed(report))[0]
    assert not NOT_A_NUMBER.search(render.markdown(typed(report), Path("run")))


def test_missing():
    assert render.missing(None) and render.missing(float("nan")) and render.missing(math.inf)
    assert render.missing("x") and not render.missing(0) and not render.missing(0.5)
    assert render.pct(float("nan"), "why") == "n/a (why)" and render.pct(0.5) == "50.0%"


def test_held_out_loss_missing_for_one_system_only():
    report = real_run(held_out_loss={"base": {"loss": 2.5, "perplexity": 12.18, "tokens": 900},
                                     "tuned": {"loss": float("nan"), "perplexity": float("nan"), "tokens": 0}})
    text = render.markdown(typed(report), Path("run"))
    assert ("- held-out loss 2.500 → n/a (no assistant tokens) (perplexity 12.2 → n/a (no assistant tokens))"
            in text)
