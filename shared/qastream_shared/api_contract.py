"""What every service's OpenAPI document promises beyond its routes, and the one guard that keeps it.

Every error is an RFC 9457 problem (`http.problem`), so every operation documents its problem responses
here once: 401/403/422 everywhere, 404 where the path names a resource, 400/413 where there is a body.
PostgreSQL cannot store a NUL character or an integer beyond int64; rather than a 500 from the driver,
`safe_parameters` refuses them in any path or query parameter with a 422 naming it, and the document says so
(a NUL-free pattern on string parameters, int64 bounds on integer ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from qastream_shared.http import PROBLEM, field_errors

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
NO_NUL = "^[^\\x00]*$"
REF = "#/components/schemas/"


# Versions (of scorecards, rules, plans) are PostgreSQL integers: a larger one can name nothing.
VersionPath = Annotated[int, Path(ge=1, le=INT32_MAX)]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document; some answers add their own members (e.g. a batch's per-item results)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


def at_least_one_of(*fields: str) -> dict[str, Any]:
    """The schema side of a model that needs one of `fields` given (and not null)."""
    return {
        "anyOf": [{"required": [f], "properties": {f: {"not": {"type": "null"}}}} for f in fields],
        "description": f"give at least one of {', '.join(fields)}",
    }


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is a problem document."""
    return {"description": description, "content": {PROBLEM: {"schema": {"$ref": f"{REF}Problem"}}}}


_COMMON = {
    "401": "Missing, invalid or revoked API key (or session)",
    "403": "The key's role may not do this",
    "422": "Invalid request; `errors` names each field",
}
_WITH_PATH_PARAMETERS = {"404": "No such resource in the key's tenant"}
_WITH_BODY = {"400": "The body is not valid JSON", "413": "The body is over the size limit"}


async def safe_parameters(request: Request) -> None:
    """An app-wide dependency: 422 for a NUL in any parameter, or an integer parameter beyond int64."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    errors: list[dict[str, str]] = []
    for located, field in _parameters(dependant):
        name = field.alias
        values = request.query_params.getlist(name) if located == "query" else [request.path_params.get(name)]
        for value in values:
            if value is None:
                continue
            if "\x00" in value:
                errors.append({"field": name, "message": "must not contain NUL characters"})
            elif _is_integer(field.field_info.annotation) and _beyond_int64(value):
                errors.append({"field": name, "message": f"must be between {INT64_MIN} and {INT64_MAX}"})
    if errors:
        raise field_errors(errors)


def _parameters(dependant: Dependant) -> Iterable[tuple[str, Any]]:
    """Every path and query parameter of a route, its dependencies' included."""
    for field in dependant.path_params:
        yield "path", field
    for field in dependant.query_params:
        yield "query", field
    for sub in dependant.dependencies:
        yield from _parameters(sub)


def _is_integer(annotation: Any) -> bool:
    return annotation is int or (
        int in getattr(annotation, "__args__", ()) and bool not in annotation.__args__
    )


def _beyond_int64(value: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False  # not a number at all: the parameter's own validation names that
    return not INT64_MIN <= number <= INT64_MAX


def install(app: FastAPI, models: Iterable[type[BaseModel]] = ()) -> None:
    """The app's OpenAPI document, with the problem responses, parameter bounds and `models` published."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        publish_models(components, Problem)
        publish_models(components, *models)
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                document(path, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    wanted = dict(_COMMON)
    if "{" in path:
        wanted.update(_WITH_PATH_PARAMETERS)
    if "requestBody" in operation:
        wanted.update(_WITH_BODY)
    for code, description in wanted.items():
        responses.setdefault(code, {"description": description})
    for code, response in responses.items():
        if code.isdigit() and int(code) >= 400:
            content = response.setdefault("content", {})
            if PROBLEM not in content:
                response["content"] = {PROBLEM: {"schema": {"$ref": f"{REF}Problem"}}}
    for parameter in operation.get("parameters", []):
        _bound(parameter.get("schema", {}))


def _bound(schema: dict[str, Any]) -> None:
    for option in schema.get("anyOf", []):
        _bound(option)
    if schema.get("type") == "integer":
        schema.setdefault("minimum", INT64_MIN)
        schema.setdefault("maximum", INT64_MAX)
    elif schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
        schema["pattern"] = NO_NUL


def publish_models(components: dict[str, Any], *models: type[BaseModel]) -> None:
    """Adds `models` and their definitions to the OpenAPI components without replacing a different one.

    Names are unique per module in Python but global in OpenAPI: a turn's speaker `Role` must not
    overwrite an API key's `Role`, so a clashing definition is published as `<first model><Name>`.
    """
    if not models:
        return
    ours: dict[str, Any] = {}
    for model in models:
        js = model.model_json_schema(ref_template=REF + "{model}")
        ours.update(js.pop("$defs", {}))
        ours[model.__name__] = js
    prefix = models[0].__name__
    renames = {n: f"{prefix}{n}" for n, d in ours.items() if n in components and components[n] != d}
    text = orjson.dumps(ours).decode()
    for old, new in renames.items():
        text = text.replace(f'"{REF}{old}"', f'"{REF}{new}"')
    for name, definition in orjson.loads(text).items():
        components[renames.get(name, name)] = definition
