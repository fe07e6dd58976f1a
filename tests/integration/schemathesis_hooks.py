"""Loaded by the schemathesis CLI (SCHEMATHESIS_HOOKS) in test_http_contract.py.

`positive_data_acceptance` (a schema-valid request must not be refused) with the exceptions JSON Schema
cannot state, each a rule the code rightly enforces on a request the schema allows:
- a cursor is valid only if the endpoint issued it (paging.decode_cursor), so a generated one is a 422;
- a range of days `from`..`to` must not be inverted: JSON Schema cannot compare two parameters.
Every other schema-valid request must be accepted. Services whose schemas cannot yet say what the code
accepts exclude this check with their reason (live_service.SERVICES).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

NAME = "positive_data_acceptance_but_cross_parameter_rules"


def beyond_json_schema(query: dict[str, Any] | None) -> str | None:
    """Why a schema-valid query may still be refused, or None when it must be accepted."""
    query = query or {}
    if query.get("cursor") is not None:
        return "a cursor the endpoint did not issue"
    since, until = query.get("from"), query.get("to")
    if isinstance(since, str) and isinstance(until, str) and since > until:  # ISO dates sort as text
        return "an inverted range of days"
    return None


@schemathesis.check
def positive_data_acceptance_but_cross_parameter_rules(ctx: Any, response: Any, case: Any) -> bool | None:
    if beyond_json_schema(case.query) is not None:
        return None
    return positive_data_acceptance(ctx, response, case)
