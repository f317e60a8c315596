"""README's "Where things live" names every package and module under src/ftorch/, and nothing that is not there:
the map a new maintainer reads is the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ftorch"
PATH = re.compile(r"`([\w./]+(?:/|\.py))`")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n", text.index("### Where things live"))  # after the heading, which names src/ftorch/
    end = text.index("\n#", start + 1)
    return text[start:end]


def _named() -> set[str]:
    """Packages as `dir/`, modules as `dir/module.py` (a package's `__init__.py` names the package)."""
    named = set()
    for path in PATH.findall(_section()):
        if path.endswith("/__init__.py"):
            path = path.removesuffix("__init__.py")
        named.add(path)
    return named


def _tree() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py":
            if relative != "__init__.py":
                found.add(relative.removesuffix("__init__.py"))
        else:
            found.add(relative)
    return found


def test_every_package_and_module_is_named():
    assert sorted(_tree() - _named()) == [], "add these to README's Where things live"


def test_nothing_named_is_missing_from_the_tree():
    assert sorted(_named() - _tree()) == [], "README's Where things live names these, which do not exist"
