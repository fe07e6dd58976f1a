"""What every scoring API module shares: the runtime, the role groups, and problem answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, NoReturn

from fastapi import HTTPException, Path, Request

from qastream_scoring import service
from qastream_scoring.engine import InvalidRating
from qastream_shared.auth import Principal, may_see, require
from qastream_shared.events import Role
from qastream_shared.http import unprocessable
from qastream_shared.request_work import work
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.scorecard import Scorecard, ScoringSettings
from qastream_shared.unit_of_work import UnitOfWork

Reader = Annotated[Principal, require()]
Lead = Annotated[Principal, require(Role.admin, Role.qa_lead)]
# Keys that review: their agent_id is the reviewer's user id.
Reviewing = Annotated[Principal, require(Role.admin, Role.qa_lead, Role.team_lead, Role.reviewer)]
Id = Annotated[str, Path(max_length=64)]


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


@contextlib.asynccontextmanager
async def configured(
    request: Request, tenant_id: str
) -> AsyncIterator[tuple[UnitOfWork, ScoringSettings, Scorecard]]:
    """A read's unit of work with the tenant's scoring settings and active scorecard. Only a tenant's first
    use creates them (publishing the default scorecard): a write, so that one time runs in a transaction."""
    async with work(request) as uow:
        found = await service.stored_config(uow, tenant_id)
        if found is not None:
            yield uow, *found
    if found is None:
        async with runtime(request).unit_of_work() as uow:
            yield uow, *await service.config(uow, tenant_id)


def invalid_rating(exc: InvalidRating) -> HTTPException:
    return unprocessable(exc.path, exc.message)


def user_id(principal: Principal) -> str:
    """The person behind a key (its agent_id), for actions that record who did them."""
    if principal.agent_id is None:
        raise HTTPException(403, "this key names no user (agent_id), so it cannot do this")
    return principal.agent_id


def actor(principal: Principal) -> str:
    """Who did it, for the log: the user, else the key."""
    return principal.agent_id or f"key:{principal.key_id}"


def not_found(what: str) -> NoReturn:
    raise HTTPException(404, f"no {what} in this tenant that this key may see")


def sees(principal: Principal, row: Mapping[str, Any]) -> bool:
    """auth.may_see for a review, assignment or dispute row. A row with no reviewer (an AutoQA review, an
    unassigned assignment) is no reviewer's: '' matches no key, where None would mean "no reviewer rule"."""
    return may_see(
        principal, agent_id=row["agent_id"], team=row["team"], reviewer_id=row["reviewer_id"] or ""
    )
