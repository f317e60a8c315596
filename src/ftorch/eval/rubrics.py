"""Rubrics for the LLM judge: YAML files with the criteria a grade checks and the scale it uses. A few ship in
conf/rubrics/ (style, correctness, format; their schema in conf/rubrics/README.md); a user names one of those or
the path of their own. A rubric that does not load is a config error naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError, Problem


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    criteria: list[str] = Field(min_length=1)
    scale: Literal["pass_fail", "1-5"]
    pass_threshold: int | None = Field(None, ge=1, le=5)
    instructions: str
    pass_fail: str | None = None
    levels: dict[int, str] | None = None

    @model_validator(mode="after")
    def _threshold_for_grades(self) -> Rubric:
        if self.scale == "1-5" and self.pass_threshold is None:
            raise ValueError("pass_threshold: a 1-5 rubric needs the grade at or above which an answer passes")
        return self

    def threshold(self) -> int:
        """The 1-5 grade at or above which an answer passes (4 where the rubric grades pass/fail only)."""
        return self.pass_threshold or 4


def shipped_folder() -> Path:
    from ..config.compose import find_project

    return find_project().conf_dir / "rubrics"


def load_rubric(name_or_path: str) -> Rubric:
    """A shipped rubric by name, or a YAML file by path."""
    path = Path(name_or_path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        folder = shipped_folder()
        path = folder / f"{name_or_path}.yaml"
        if not path.is_file():
            from ..errors import did_you_mean

            names = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ConfigError(Problem("eval.judge.rubric", f"no shipped rubric '{name_or_path}'",
                                      did_you_mean(name_or_path, names) or f"shipped: {', '.join(names)}; or give "
                                      "the path of your own YAML rubric (schema: conf/rubrics/README.md)"))
    from ..config.compose import read_config_file

    try:
        data = yaml.safe_load(read_config_file(path))
        return Rubric.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(f"eval.judge.rubric: {path}", f"not valid YAML: {exc}")) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(the file)"
        raise ConfigError(Problem(f"eval.judge.rubric: {path}: {key}", str(first["msg"]),
                                  "the keys are described in conf/rubrics/README.md")) from None
