"""Scoring's use cases: scorecard versions, tenant settings, AutoQA reviews, re-scoring.

Every function runs inside the caller's unit of work; published events go through its outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from qastream_scoring.autoqa.pipeline import AutoReview
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import DEFAULT_SCORECARD_ID, default_scorecard
from qastream_scoring.tables import conversations, reviews, scorecards, scoring_settings
from qastream_scoring.validation import next_version
from qastream_shared.conversation import Conversation
from qastream_shared.db import array_insert, array_params
from qastream_shared.events import (
    Envelope,
    Rating,
    ReviewKind,
    ReviewSubmitted,
    ScorecardPublished,
    conversation_key,
    deterministic_id,
)
from qastream_shared.scorecard import Scorecard, ScoringSettings
from qastream_shared.topics import REVIEWS, SCORECARDS
from qastream_shared.unit_of_work import UnitOfWork

SOURCE = "scoring"
# Batch inserts are one statement of arrays (db.array_insert), whatever the batch size: an executemany
# bound and converted every row in Python, and with RETURNING SQLAlchemy sent a multi-row VALUES, a new
# statement to compile, prepare and plan for every batch size. The JSONB columns arrive as JSON text from
# pydantic's serializer or orjson and are cast in SQL.
_CONVERSATION_COLUMNS = ("tenant_id", "conversation_id", "body", "ended_at")
_INSERT_CONVERSATIONS = array_insert(conversations, _CONVERSATION_COLUMNS)
_REVIEW_COLUMNS = (
    "review_id",
    "tenant_id",
    "conversation_id",
    "kind",
    "scorecard_id",
    "scorecard_version",
    "scorer_versions",
    "ratings",
    "score",
    "auto_failed",
    "passed",
    "agent_id",
    "team",
    "channel",
    "inclusion_probability",
    "pcsat",
    "submitted_at",
)
_INSERT_REVIEWS = array_insert(reviews, _REVIEW_COLUMNS, suffix="ON CONFLICT DO NOTHING RETURNING review_id")
_RATINGS = TypeAdapter(list[Rating])
# Published versions are immutable, so a parsed copy can be shared by every batch that uses it.
_PARSED: dict[tuple[str, str, int], Scorecard] = {}


def _parse(tenant_id: str, body: Any) -> Scorecard:
    key = (tenant_id, body["scorecard_id"], body["version"])
    card = _PARSED.get(key)
    if card is None:
        card = _PARSED[key] = Scorecard.model_validate(body)
    return card


async def latest(uow: UnitOfWork, tenant_id: str, scorecard_id: str) -> Scorecard | None:
    row = (
        await uow.session.execute(
            select(scorecards.c.body)
            .where(scorecards.c.tenant_id == tenant_id, scorecards.c.scorecard_id == scorecard_id)
            .order_by(scorecards.c.version.desc())
            .limit(1)
        )
    ).first()
    return _parse(tenant_id, row[0]) if row else None


async def version(uow: UnitOfWork, tenant_id: str, scorecard_id: str, v: int) -> Scorecard | None:
    # A published version never changes and is never deleted, so once parsed it needs no query.
    if (cached := _PARSED.get((tenant_id, scorecard_id, v))) is not None:
        return cached
    row = (
        await uow.session.execute(
            select(scorecards.c.body).where(
                scorecards.c.tenant_id == tenant_id,
                scorecards.c.scorecard_id == scorecard_id,
                scorecards.c.version == v,
            )
        )
    ).first()
    return _parse(tenant_id, row[0]) if row else None


async def list_latest(uow: UnitOfWork, tenant_id: str) -> list[Scorecard]:
    newest = (
        select(scorecards.c.scorecard_id, func.max(scorecards.c.version).label("v"))
        .where(scorecards.c.tenant_id == tenant_id)
        .group_by(scorecards.c.scorecard_id)
        .subquery()
    )
    rows = await uow.session.execute(
        select(scorecards.c.body)
        .join(
            newest,
            and_(scorecards.c.scorecard_id == newest.c.scorecard_id, scorecards.c.version == newest.c.v),
        )
        .where(scorecards.c.tenant_id == tenant_id)
        .order_by(scorecards.c.scorecard_id)
    )
    return [_parse(tenant_id, r[0]) for r in rows]


async def publish(uow: UnitOfWork, tenant_id: str, draft: Scorecard) -> Scorecard:
    """Publishes draft as the next immutable version (InvalidScorecard when it has problems)."""
    existing = await latest(uow, tenant_id, draft.scorecard_id)
    card = next_version(existing, draft, datetime.now(UTC))
    if existing is not None and card.version == existing.version:
        return existing
    inserted = (
        await uow.session.execute(
            pg_insert(scorecards)
            .values(
                tenant_id=tenant_id,
                scorecard_id=card.scorecard_id,
                version=card.version,
                body=card.model_dump(mode="json"),
                published_at=card.published_at,
            )
            .on_conflict_do_nothing()
            .returning(scorecards.c.version)
        )
    ).first()
    if inserted is None:  # a concurrent publish took this version number: that one wins
        found = await version(uow, tenant_id, card.scorecard_id, card.version)
        assert found is not None
        return found
    uow.publish(
        SCORECARDS,
        Envelope(
            data=ScorecardPublished(scorecard=card),
            source=SOURCE,
            tenant=tenant_id,
            key=f"{tenant_id}:{card.scorecard_id}",
            subject=card.scorecard_id,
        ),
    )
    return card


async def stored_config(uow: UnitOfWork, tenant_id: str) -> tuple[ScoringSettings, Scorecard] | None:
    """The tenant's scoring settings and active scorecard as stored; None until `config` created them."""
    # One round trip for the settings and the active card's newest version number; that version's body
    # is read only when this process has not parsed it yet (published versions never change).
    newest = (
        select(func.max(scorecards.c.version))
        .where(
            scorecards.c.tenant_id == tenant_id,
            scorecards.c.scorecard_id == scoring_settings.c.active_scorecard_id,
        )
        .scalar_subquery()
    )
    row = (
        await uow.session.execute(
            select(scoring_settings.c.settings, scoring_settings.c.active_scorecard_id, newest).where(
                scoring_settings.c.tenant_id == tenant_id
            )
        )
    ).first()
    if row is None:
        return None
    card = None if row[2] is None else await version(uow, tenant_id, row[1], row[2])
    return None if card is None else (ScoringSettings.model_validate(row[0]), card)


async def config(uow: UnitOfWork, tenant_id: str) -> tuple[ScoringSettings, Scorecard]:
    """The tenant's scoring settings and active scorecard, creating the defaults on first use."""
    found = await stored_config(uow, tenant_id)
    if found is not None:
        return found
    await uow.session.execute(
        pg_insert(scoring_settings)
        .values(
            tenant_id=tenant_id,
            settings=ScoringSettings().model_dump(mode="json"),
            active_scorecard_id=DEFAULT_SCORECARD_ID,
        )
        .on_conflict_do_nothing()
    )
    row = (
        await uow.session.execute(
            select(scoring_settings.c.settings, scoring_settings.c.active_scorecard_id).where(
                scoring_settings.c.tenant_id == tenant_id
            )
        )
    ).one()
    card = await latest(uow, tenant_id, row[1])
    if card is None:
        card = await publish(uow, tenant_id, default_scorecard())
    return ScoringSettings.model_validate(row[0]), card


async def settings_of(uow: UnitOfWork, tenant_id: str) -> ScoringSettings:
    """The tenant's scoring settings (the defaults until it sets its own)."""
    row = (
        await uow.session.execute(
            select(scoring_settings.c.settings).where(scoring_settings.c.tenant_id == tenant_id)
        )
    ).first()
    return ScoringSettings.model_validate(row[0]) if row else ScoringSettings()


async def set_settings(
    uow: UnitOfWork, tenant_id: str, settings: ScoringSettings, active: str | None
) -> None:
    await config(uow, tenant_id)
    values: dict[str, Any] = {"settings": settings.model_dump(mode="json")}
    if active is not None:
        values["active_scorecard_id"] = active
    await uow.session.execute(
        scoring_settings.update().where(scoring_settings.c.tenant_id == tenant_id).values(**values)
    )


def review_id(tenant_id: str, conversation_id: str, auto: AutoReview) -> str:
    """Deterministic: the same conversation under the same scorecard, scorers and pCSAT model is one review,
    ever; a new pCSAT model version makes `qa rescore` back-fill new reviews rather than skip them."""
    parts = [
        ReviewKind.auto.value,
        auto.scorecard_id,
        str(auto.scorecard_version),
        orjson.dumps(auto.scorer_versions, option=orjson.OPT_SORT_KEYS).decode(),
    ]
    if auto.pcsat_version is not None:
        parts.append(f"pcsat={auto.pcsat_version}")
    return deterministic_id("review", tenant_id, conversation_id, *parts)


async def store_conversations(uow: UnitOfWork, tenant_id: str, convs: list[Conversation]) -> None:
    if not convs:
        return
    rows = {
        c.conversation_id: {
            "tenant_id": tenant_id,
            "conversation_id": c.conversation_id,
            "body": c.model_dump_json().encode(),
            "ended_at": c.end_time(),
        }
        for c in convs
    }
    await uow.session.execute(_INSERT_CONVERSATIONS, array_params(_CONVERSATION_COLUMNS, list(rows.values())))


def auto_review_event(
    rid: str, conv: Conversation, auto: AutoReview, inclusion: float | None, now: datetime
) -> ReviewSubmitted:
    """The auto review's event without its pcsat, whose JSON `with_pcsat` puts into the payload."""
    return ReviewSubmitted(
        review_id=rid,
        conversation_id=conv.conversation_id,
        kind=ReviewKind.auto,
        scorecard_id=auto.scorecard_id,
        scorecard_version=auto.scorecard_version,
        scorer_versions=auto.scorer_versions,
        agent_id=conv.agent_id,
        team=conv.team,
        channel=conv.channel.value,
        ratings=auto.ratings,
        score=auto.result.score,
        auto_failed=auto.result.auto_failed,
        passed=auto.result.passed,
        inclusion_probability=inclusion,
        submitted_at=now,
    )


async def auto_reviews(
    uow: UnitOfWork,
    tenant_id: str,
    items: Sequence[tuple[Conversation, float | None, Envelope | None]],
    *,
    settings: ScoringSettings,
    card: Scorecard,
    runner: AutoQARunner,
) -> int:
    """Scores each conversation, stores the reviews and publishes ReviewSubmitted; returns how many are new."""
    now = datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    # Per review: its event (without pcsat), what caused it, and the pCSAT JSON its payload gets.
    events: dict[str, tuple[ReviewSubmitted, Envelope | None, bytes | None]] = {}
    autos = await runner.score([conv for conv, _, _ in items], card, settings)
    for (conv, inclusion, cause), auto in zip(items, autos, strict=True):
        rid = review_id(tenant_id, conv.conversation_id, auto)
        events[rid] = (auto_review_event(rid, conv, auto, inclusion, now), cause, auto.pcsat_json)
        rows[rid] = {
            "review_id": rid,
            "tenant_id": tenant_id,
            "conversation_id": conv.conversation_id,
            "kind": ReviewKind.auto.value,
            "scorecard_id": auto.scorecard_id,
            "scorecard_version": auto.scorecard_version,
            "scorer_versions": orjson.dumps(auto.scorer_versions).decode(),
            "ratings": _RATINGS.dump_json(auto.ratings, exclude_none=True).decode(),
            "score": auto.result.score,
            "auto_failed": auto.result.auto_failed,
            "passed": auto.result.passed,
            "agent_id": conv.agent_id,
            "team": conv.team,
            "channel": conv.channel.value,
            "inclusion_probability": inclusion,
            "pcsat": auto.pcsat_json.decode() if auto.pcsat_json is not None else None,
            "submitted_at": now,
        }
    if not rows:
        return 0
    params = array_params(_REVIEW_COLUMNS, list(rows.values()))
    inserted = set((await uow.session.execute(_INSERT_REVIEWS, params)).scalars())
    for rid in rows:  # published in the batch's order
        if rid not in inserted:
            continue
        ev, cause, prediction = events[rid]
        key = conversation_key(tenant_id, ev.conversation_id)
        env = (
            cause.caused(ev, SOURCE, key=key, id=rid)
            if cause is not None
            else Envelope(
                data=ev, source=SOURCE, tenant=tenant_id, key=key, subject=ev.conversation_id, id=rid
            )
        )
        if prediction is not None:
            env = replace(env, _value=with_pcsat(env.value(), prediction))
        uow.publish(REVIEWS, env)
    return len(inserted)


_NO_PCSAT = b',"pcsat":null,'


def with_pcsat(payload: bytes, prediction: bytes) -> bytes:
    """A ReviewSubmitted's JSON written without pcsat, with the prediction's JSON in its place: the bytes
    model_dump_json writes for the event with the PredictedCsat, without building and validating that model
    (tests/unit/scoring/test_pcsat_json.py compares them on every STAR conversation). The last match is the
    event's own field: only comments (empty on auto reviews) and submitted_at follow it, and inside a JSON
    string every quote is escaped, so no text can hold the pattern."""
    at = payload.rindex(_NO_PCSAT) + len(_NO_PCSAT) - len(b"null,")
    return payload[:at] + prediction + payload[at + len(b"null") :]


def review_view(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["submitted_at"] = row["submitted_at"].isoformat()
    return out
