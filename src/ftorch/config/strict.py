"""The base of every schema model: unknown keys forbidden, frozen, and no boolean read as a number."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        """pydantic reads true as 1 for a number field (`train.epochs=true` would be 1.0): such a value goes on
        as the text 'true', which the field then refuses at its own key."""
        if not isinstance(data, dict):
            return data
        fixed = {}
        for name, value in data.items():
            if isinstance(value, bool) and name in cls.model_fields and name != "name":
                kinds = _kinds(cls.model_fields[name].annotation)
                if bool not in kinds and Any not in kinds and (int in kinds or float in kinds):
                    value = str(value).lower()
            fixed[name] = value
        return fixed


def _kinds(annotation: Any) -> set:
    """The plain types a field's annotation accepts (through Annotated, unions and Optional)."""
    if annotation is Any or isinstance(annotation, type):
        return {annotation}
    if get_origin(annotation) is Literal:
        return {type(v) for v in get_args(annotation)}
    found: set = set()
    for arg in get_args(annotation):
        if get_origin(annotation) in (Annotated,) and arg is not get_args(annotation)[0]:
            break  # Annotated metadata
        found |= _kinds(arg)
    return found
