"""Request models read JSON: a JSON `true` is not a number and `0` is not a boolean.

Pydantic's lax mode turns `true` into 1 for an int or float field and 0/1 into a boolean, so a body the
published schema forbids would be accepted. Models clients send derive from `JsonInput` instead.
"""

from __future__ import annotations

import types
from datetime import date, datetime
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, model_validator


class JsonInput(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if key not in data or data[key] is None:
                continue
            _check(key, data[key], field.annotation)
        return data


def _iso_text(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _numeric(value)):
        raise ValueError("must be an ISO 8601 date or date-time, not a number")
    return value


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# A query parameter is text, and pydantic reads a numeric one ("0.5") as a Unix time: the published
# schema says date or date-time, so such a parameter is an `IsoDate` or `IsoDateTime`.
IsoDate = Annotated[date, BeforeValidator(_iso_text)]
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]


def _check(key: str, value: Any, annotation: Any) -> None:
    kinds = _kinds(annotation)
    if value is None:
        return
    if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
        raise ValueError(f"{key}: must be a number, not {str(value).lower()}")
    if kinds == {bool} and not isinstance(value, bool):
        raise ValueError(f"{key}: must be true or false")
    if kinds & {datetime} and isinstance(value, int | float):
        raise ValueError(f"{key}: must be an ISO 8601 date-time string")
    for kind in kinds:
        if get_origin(kind) is dict and isinstance(value, dict):
            for k, v in value.items():
                _check(f"{key}.{k}", v, get_args(kind)[1])


def _kinds(annotation: Any) -> set[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return {k for a in get_args(annotation) for k in _kinds(a)} - {type(None)}
    if get_origin(annotation) is Annotated:
        return _kinds(get_args(annotation)[0])
    return {annotation}
