"""The learning curve's command line and what it writes, without a model: fractions become the sweep over
data.train_fraction, bad fractions are refused, and the table and markdown carry the points, the projections and
the sentence."""

from pathlib import Path

import numpy as np
import pytest

from ftorch.cli.curve import _sweep_overrides
from ftorch.errors import ConfigError
from ftorch.eval.curve import CurveReport, Point, markdown, plot, table
from ftorch.eval.curve_fit import learning_curve, sentence


def test_fractions_become_the_sweep_and_bad_ones_are_refused():
    assert _sweep_overrides(["recipe=quickstart"]) == ["recipe=quickstart", "sweep=learning_curve",
                                                        "data.train_fraction=0.25,0.5,1.0"]
    assert _sweep_overrides(["fractions=0.1,0.3,1", "train.lr=1e-4"])[-1] == "data.train_fraction=0.1,0.3,1"
    for bad in ("fractions=0,0.5,1", "fractions=a,b", "fractions=0.5,1.5"):
        with pytest.raises(ConfigError, match="fractions are numbers"):
            _sweep_overrides([bad])
    with pytest.raises(ConfigError, match="runs its own sweep"):
        _sweep_overrides(["sweep=optuna"])


def test_table_markdown_and_plot_carry_the_curve(tmp_path):
    rng = np.random.default_rng(0)
    means = {60: 0.55, 120: 0.7, 240: 0.78}
    points = [Point(tmp_path / f"trial_{n}", f, size, [float(v) for v in (rng.random(200) < means[size])])
              for n, (f, size) in enumerate(((0.25, 60), (0.5, 120), (1.0, 240)))]
    curve = learning_curve([p.examples for p in points], [p.scores for p in points], baseline=0.8, resamples=50)
    report = CurveReport(tmp_path, "field_accuracy", points, 0.8, "retrieved_3", curve, sentence(curve),
                         points[-1].trial, 200)
    header, rows = table(report)
    assert header[:3] == ["data", "examples", "tuned field_accuracy"]
    assert [r[1] for r in rows] == ["60", "120", "240", "480", "960"]
    assert rows[3][0] == "2× (projected)" and "95% CI" in rows[3][2]
    text = markdown(report)
    assert text.startswith("## Learning curve\n\n" + report.sentence[0].upper())
    assert "retrieved_3" in text and "80.0%" in text and "Three points extrapolate poorly" in text
    plot(report, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert Path(tmp_path / "curve.png").stat().st_size > 10_000
