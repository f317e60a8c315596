"""The provider registry: one list of names, and an install hint that exists for each."""

import re
import sys
import tomllib
from pathlib import Path

import pytest

from ftorch.backends import INSTALL_HINTS, REGISTRY, get_backend
from ftorch.config.providers import PROVIDER_MODELS, PROVIDER_NAMES
from ftorch.errors import MissingExtra

ROOT = Path(__file__).resolve().parents[2]


def test_one_list_of_providers():
    assert tuple(REGISTRY) == PROVIDER_NAMES == tuple(PROVIDER_MODELS) == tuple(INSTALL_HINTS)
    for name in PROVIDER_NAMES:
        assert (ROOT / "conf" / "provider" / f"{name}.yaml").is_file()


def test_install_hints_name_extras_and_targets_that_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    makefile = (ROOT / "Makefile").read_text()
    for hint in INSTALL_HINTS.values():
        for extra in re.findall(r"ftorch\[([\w-]+)\]", hint):
            assert extra in extras, hint
        for target in re.findall(r"make ([\w-]+)", hint):
            assert re.search(rf"^{target}:", makefile, re.M), hint


def test_a_provider_whose_module_cannot_import_names_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ftorch.backends.openai.backend", None)  # import of it raises ImportError
    with pytest.raises(MissingExtra) as raised:
        get_backend("openai")
    assert "pip install 'ftorch[openai]'" in raised.value.render()


def test_each_backend_says_where_its_weights_end_up():
    """export and serve ask the backend, not the provider's name: a new provider declares it once."""
    weights = {name: get_backend(name).weights for name in PROVIDER_NAMES}
    assert weights == {"peft": "adapter", "openai": "hosted", "axolotl": "adapter", "unsloth": "adapter",
                       # together: an adapter once downloaded (provider.download_adapter, ftorch pull); without it,
                       # its eval refuses weights-only settings itself and export/chat say there is no adapter
                       "together": "adapter"}
