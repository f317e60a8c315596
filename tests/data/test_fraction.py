"""data.train_fraction: seeded subsets that nest, applied where a run's training data is read."""

from pathlib import Path

import pytest

from ftorch.config.schema import DataConfig
from ftorch.data.fraction import nested_indices
from ftorch.data.report import check_data

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "datasets" / "quickstart" / "train.jsonl"


def test_fractions_nest_and_have_the_right_size():
    quarter, half, whole = (set(nested_indices(240, f, seed=3)) for f in (0.25, 0.5, 1.0))
    assert (len(quarter), len(half), len(whole)) == (60, 120, 240)
    assert quarter < half < whole
    assert nested_indices(240, 0.25, seed=3) == sorted(quarter)  # file order kept
    assert set(nested_indices(240, 0.25, seed=4)) != quarter  # the seed picks the subset
    assert nested_indices(3, 0.01, seed=0) and len(nested_indices(10, 0.33, seed=0)) == 4
    with pytest.raises(ValueError):
        nested_indices(10, 0.0, seed=0)


def test_check_data_trains_on_the_subset_with_its_own_line_numbers():
    whole = check_data(DataConfig(train=str(TRAIN))).splits["train"]
    half = check_data(DataConfig(train=str(TRAIN), train_fraction=0.5, fraction_seed=1)).splits["train"]
    assert len(half.examples) == len(whole.examples) // 2
    by_line = dict(zip(whole.lines, whole.examples))
    assert all(by_line[line] == example for line, example in zip(half.lines, half.examples))


@pytest.mark.parametrize("recipe", ["openai-quickstart", "axolotl-quickstart", "together-quickstart"])
def test_a_provider_that_trains_on_the_whole_file_refuses_a_fraction(monkeypatch, recipe):
    from ftorch.config.compose import find_project
    from ftorch.errors import ConfigError
    from ftorch.run.lifecycle import prepare

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-test")
    with pytest.raises(ConfigError) as refused:
        prepare(find_project(), [f"recipe={recipe}", "data.train_fraction=0.5"])
    assert "data.train_fraction" in refused.value.render() and "cannot take a fraction" in refused.value.render()
    prepare(find_project(), [f"recipe={recipe}", "data.train_fraction=1.0"])
