"""RunConfig.provider_as: the provider union narrowed to the kind a caller needs, or a config error."""

import pytest

from ftorch.config.providers import OpenAIProvider, PeftProvider
from ftorch.config.schema import RunConfig
from ftorch.errors import ConfigError


def config(provider: dict) -> RunConfig:
    return RunConfig.model_validate({"provider": provider, "model": {"name": "m"}, "data": {"train": "t.jsonl"}})


def test_the_expected_kind_is_returned_as_itself():
    cfg = config({"name": "openai", "max_cost_usd": 3.0})
    narrowed = cfg.provider_as(OpenAIProvider)
    assert narrowed is cfg.provider and narrowed.max_cost_usd == 3.0


def test_another_kind_is_a_config_error_naming_both():
    with pytest.raises(ConfigError) as caught:
        config({"name": "peft"}).provider_as(OpenAIProvider)
    problem = caught.value.problems[0]
    assert problem.where == "provider.name" and "provider=openai" in problem.message and "peft" in problem.message
    assert isinstance(config({"name": "peft"}).provider_as(PeftProvider), PeftProvider)
