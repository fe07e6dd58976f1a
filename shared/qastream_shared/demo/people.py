"""The human side of the demo, played by simulated personas through the same APIs people use:
reviewers work their queue, an agent disputes a review, a QA lead resolves it and runs a calibration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from rich.table import Table

from qastream_shared.demo.personas import PERSONAS, SIMULATED, Persona, ratings
from qastream_shared.demo.ui import console, fail
from qastream_shared.scorecard import Scorecard

REVIEWS_EACH = 6
CALIBRATION_CONVERSATIONS = 5


class KeyMaker(Protocol):
    def get(self, label: str, role: str, *, agent_id: str | None = None, team: str | None = None) -> str: ...


@asynccontextmanager
async def as_user(key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        yield http


def _ok(r: httpx.Response, what: str) -> Any:
    if r.status_code >= 400:
        fail(f"{what}: {r.status_code} {r.text}")
    return r.json() if r.content else None


async def simulate(urls: dict[str, str], keys: KeyMaker) -> None:
    console.rule("Review work by simulated personas: not real people")
    scoring = f"{urls['scoring']}/v1"
    reviews = await _review_queue(scoring, keys)
    if not reviews:
        console.print("[yellow]no manual samples reached the reviewers' queues yet[/]")
        return
    lead = keys.get("qa lead", "qa_lead", agent_id="qa-lead-maria")
    await _dispute(scoring, keys, lead, reviews)
    await _calibrate(scoring, keys, lead, reviews)


async def _review_queue(scoring: str, keys: KeyMaker) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    table = Table("reviewer", "habit", "reviews submitted", title=f"Reviewer personas {SIMULATED}")
    for persona in PERSONAS:
        key = keys.get(persona.reviewer_id, "reviewer", agent_id=persona.reviewer_id)
        async with as_user(key) as http:
            n = 0
            for _ in range(REVIEWS_EACH):
                r = await http.get(f"{scoring}/assignments/next")
                if r.status_code == 204:
                    break
                aid = _ok(r, "next assignment")["assignment_id"]
                done.append(await _review(http, scoring, persona, aid))
                n += 1
        table.add_row(persona.reviewer_id, persona.habit, str(n))
    console.print(table)
    return done


async def _review(http: httpx.AsyncClient, scoring: str, persona: Persona, aid: str) -> dict[str, Any]:
    opened = _ok(await http.get(f"{scoring}/assignments/{aid}"), f"opening assignment {aid}")
    card = Scorecard.model_validate(opened["scorecard"])
    body: dict[str, Any] = {
        "ratings": ratings(persona, card, opened["conversation_id"], opened["auto_ratings"]),
        "comments": [{"text": f"{SIMULATED} {persona.habit}"}],
        "time_spent_s": 120 + 60 * PERSONAS.index(persona),
    }
    draft = {"ratings": body["ratings"][:1], "comments": body["comments"]}
    _ok(await http.put(f"{scoring}/assignments/{aid}/draft", json=draft), "saving a draft")
    r = await http.post(f"{scoring}/assignments/{aid}/review", json=body, headers={"Idempotency-Key": aid})
    review: dict[str, Any] = _ok(r, f"submitting assignment {aid}")
    return review


async def _dispute(scoring: str, keys: KeyMaker, lead: str, reviews: list[dict[str, Any]]) -> None:
    """The agent of the lowest-scored review disputes its weakest category; the QA lead partly accepts."""
    candidates = [r for r in reviews if r.get("agent_id") and r.get("score") is not None]
    if not candidates:
        return
    review = min(candidates, key=lambda r: r["score"])
    weakest = min((x for x in review["ratings"] if x.get("score") is not None), key=lambda x: x["score"])
    agent = keys.get(f"agent {review['agent_id']}", "agent", agent_id=review["agent_id"])
    if review.get("team"):
        keys.get(f"team lead of {review['team']}", "team_lead", team=review["team"])
    async with as_user(agent) as http:
        reason = f"{SIMULATED} I did handle {weakest['category_id']}: see the end of the conversation."
        body = {"category_id": weakest["category_id"], "reason": reason}
        dispute = _ok(
            await http.post(f"{scoring}/reviews/{review['review_id']}/disputes", json=body), "dispute"
        )
    raised = {"category_id": weakest["category_id"], "value": weakest["value"] + 1}
    async with as_user(lead) as http:
        resolution = {
            "outcome": "partially_accepted",
            "comment": f"{SIMULATED} Fair point on {weakest['category_id']}; one step up.",
            "ratings": [raised],
        }
        r = await http.post(f"{scoring}/disputes/{dispute['dispute_id']}/resolve", json=resolution)
        if r.status_code == 422:  # already at the top of the scale: reject instead, with the reason
            resolution = {"outcome": "rejected", "comment": f"{SIMULATED} The rating stands."}
            r = await http.post(f"{scoring}/disputes/{dispute['dispute_id']}/resolve", json=resolution)
        _ok(r, "resolving the dispute")
        history = _ok(await http.get(f"{scoring}/reviews/{review['review_id']}/history"), "review history")
    versions = len(history.get("versions", []))
    console.print(
        f"dispute: agent {review['agent_id']} disputed {weakest['category_id']} on review "
        f"{review['review_id'][:8]}…; the QA lead answered {resolution['outcome']}; the review now has "
        f"{versions} version(s), the first kept"
    )


async def _calibrate(scoring: str, keys: KeyMaker, lead: str, reviews: list[dict[str, Any]]) -> None:
    conversations = list(dict.fromkeys(r["conversation_id"] for r in reviews))[:CALIBRATION_CONVERSATIONS]
    async with as_user(lead) as http:
        session = _ok(
            await http.post(
                f"{scoring}/calibrations",
                json={
                    "name": f"Weekly calibration {SIMULATED}",
                    "conversation_ids": conversations,
                    "participants": [p.reviewer_id for p in PERSONAS],
                    "benchmark_reviewer_id": PERSONAS[0].reviewer_id,
                    "deadline": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
                },
            ),
            "creating a calibration session",
        )
    sid = session["session_id"]
    async with as_user(lead) as http:  # reviewers see only their own reviews, not AutoQA's
        autos = {cid: await _auto_ratings(http, scoring, cid) for cid in conversations}
        cards = {cid: await _card(http, scoring, a) for cid, a in autos.items() if a}
    for persona in PERSONAS:
        key = keys.get(persona.reviewer_id, "reviewer", agent_id=persona.reviewer_id)
        async with as_user(key) as http:
            for cid, card in cards.items():
                body = {"conversation_id": cid, "ratings": ratings(persona, card, cid, autos[cid]["ratings"])}
                _ok(await http.post(f"{scoring}/calibrations/{sid}/reviews", json=body), "calibration review")
    async with as_user(lead) as http:
        closed = _ok(await http.post(f"{scoring}/calibrations/{sid}/close"), "closing the calibration")
    results = closed.get("results") or {}
    alpha = results.get("alpha")
    console.print(
        f"calibration: {len(PERSONAS)} personas on {len(conversations)} conversations; Krippendorff's α "
        f"{alpha if alpha is None else f'{alpha:.3f}'}; alignment to {PERSONAS[0].reviewer_id}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in (results.get("alignment") or {}).items())
    )


async def _auto_ratings(http: httpx.AsyncClient, scoring: str, cid: str) -> dict[str, Any]:
    page = _ok(await http.get(f"{scoring}/reviews", params={"conversation_id": cid, "limit": 50}), "reviews")
    autos = [r for r in page["items"] if r["kind"] == "auto"]
    return autos[0] if autos else {}


async def _card(http: httpx.AsyncClient, scoring: str, review: dict[str, Any]) -> Scorecard:
    url = f"{scoring}/scorecards/{review['scorecard_id']}/versions/{review['scorecard_version']}"
    return Scorecard.model_validate(_ok(await http.get(url), "scorecard"))
