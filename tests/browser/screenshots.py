"""The README's console screenshots, on the real STAR conversations: `uv run python -m tests.browser.screenshots`.

Starts the pipeline on the project's stack (DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS, e.g. from `qa env`),
imports the conversations, lets a reviewer, an agent and a lead act through the APIs, then photographs each
page into docs/console/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from qastream_shared.testing import eventually, isolated_settings
from tests.browser import stack as pipeline
from tests.browser.browser import PHONE, Session, chromium

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


def bounds(scale: dict[str, Any]) -> tuple[int, int]:
    """The lowest and highest value of a scorecard scale."""
    if scale["kind"] == "binary":
        return 0, 1
    if scale["kind"] == "points":
        return 0, scale.get("max_points") or 1
    return 1, int(scale["kind"][0])


SURVEYED = 7  # one conversation in seven answers the survey, about the reach of a real CSAT survey


def survey_answer(labels: dict[str, Any]) -> int | None:
    """A CSAT answer that follows what the STAR customer said after the chat (STAR has no CSAT): 1 when
    the task was not done and the agent not calm and helpful, 2 for one of them, else 4, or 5 if they
    enjoyed it; none when they said neither."""
    answers = [labels.get("user_says_task_done"), labels.get("user_says_agent_calm_helpful")]
    if all(a is None for a in answers):
        return None
    misses = sum(a is False for a in answers)
    if misses:
        return 3 - misses
    return 5 if labels.get("user_says_enjoyed_task") else 4


async def prepare(s: pipeline.LiveStack, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as http:

        async def call(method: str, service: str, path: str, who: str = "lead", **kw: Any) -> Any:
            r = await http.request(method, s.url(service) + path, headers=s.auth(who), **kw)
            assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
            return r.json() if r.content else None

        await call("PUT", "scoring", "/v1/reviewers", json={"reviewers": [{"reviewer_id": "rev-1"}]})
        plan = {"plan_id": "random-10pct", "kind": "random", "name": "10% of every conversation", "rate": 0.1}
        await call("POST", "sampler", "/v1/plans", json=plan)
        rule = {
            "rule_id": "below-pass",
            "trigger": "below_pass_mark",
            "title": "Go through this review with your lead",
        }
        await call("POST", "coaching", "/v1/rules", json=rule)
        agents = {f"agent-{i}": "team-a" if i % 2 else "team-b" for i in range(1, 9)}
        conversations = pipeline.star(n, agents=agents)
        for i, c in enumerate(conversations):
            if i % SURVEYED == 0:
                c["csat"] = survey_answer(c["metadata"]["labels"])
        await pipeline.ingest(s, conversations)

        async def scored() -> bool:
            q = await call("GET", "reporting", "/v1/metrics/quality", params={"kind": "auto"})
            return bool(q["items"]) and q["items"][0]["reviews"] >= n

        await eventually(scored, within=900, every=2)
        manual: list[dict[str, Any]] = []
        for i in range(4):
            a = await call("GET", "scoring", "/v1/assignments/next", who="reviewer")
            if a is None:
                break
            a = await call("GET", "scoring", f"/v1/assignments/{a['assignment_id']}", who="reviewer")
            cats = [c for g in a["scorecard"]["groups"] for c in g["categories"]]
            ratings = []
            for j, c in enumerate(cats):
                lo, hi = bounds(c["scale"])
                low = (i + j) % 3 == 0 and not c["critical"]  # some misses, never an auto-fail
                ratings.append({"category_id": c["category_id"], "value": lo if low else hi})
            body = {
                "ratings": ratings,
                "comments": [{"turn": 1, "text": "Good acknowledgement of the problem."}],
            }
            manual.append(
                await call(
                    "POST",
                    "scoring",
                    f"/v1/assignments/{a['assignment_id']}/review",
                    who="reviewer",
                    json=body,
                )
            )
        convs = [c["conversation_id"] for c in conversations[:3]]
        deadline = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        session = await call(
            "POST",
            "scoring",
            "/v1/calibrations",
            json={
                "conversation_ids": convs,
                "participants": ["rev-1", "rev-2", "rev-3"],
                "benchmark_reviewer_id": "rev-1",
                "deadline": deadline,
            },
        )
        card = await call(
            "GET",
            "scoring",
            f"/v1/scorecards/{session['scorecard_id']}/versions/{session['scorecard_version']}",
        )
        cats = [c for g in card["groups"] for c in g["categories"]]
        for k, who in enumerate(("reviewer", "reviewer2", "reviewer3")):
            for m, cid in enumerate(convs):
                ratings = []
                for j, c in enumerate(cats):
                    lo, hi = bounds(c["scale"])
                    # Mostly agreement: the third reviewer is one step lower here and there.
                    split = k == 2 and (m + j) % 4 == 0
                    ratings.append({"category_id": c["category_id"], "value": max(lo, hi - split)})
                await call(
                    "POST",
                    "scoring",
                    f"/v1/calibrations/{session['session_id']}/reviews",
                    who=who,
                    json={"conversation_id": cid, "ratings": ratings},
                )
        await call("POST", "scoring", f"/v1/calibrations/{session['session_id']}/close")
        return {"review": manual[0]["review_id"] if manual else None}


def photograph(s: pipeline.LiveStack, facts: dict[str, Any]) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    shots = [
        ("lead", "/dashboard", "dashboard", {}),
        ("lead", f"/reviews/{facts['review']}", "review", {}),
        ("lead", "/calibration", "calibration", {}),
        ("team_lead", "/coaching", "coaching", {}),
        ("lead", "/dashboard", "phone-dashboard", {"viewport": PHONE}),
        ("lead", "/plans", "plans", {}),
    ]
    with chromium() as browser:
        for person, path, name, kw in shots:
            session = Session(browser, s, person, **kw)
            session.sign_in()
            page = session.open(path)
            if name == "calibration":
                page.locator("#session-list button.link").first.click()
                page.wait_for_selector("[data-metric=alpha]")
            if name == "plans":  # a targeted plan being written, with a problem named beside its field
                page.get_by_label("Plan id").fill("unhappy-voice")
                page.get_by_label("Name", exact=True).fill("Unhappy voice customers")
                page.get_by_label("Conversations matching rules").check()
                page.get_by_label("score (1–5)").fill("9")
                page.get_by_label("voice", exact=True).check()
                page.get_by_role("button", name="Save as a new version").click()
                page.wait_for_selector("#plan-problems .error")
            page.screenshot(path=str(DOCS / f"{name}.png"), full_page=name != "dashboard")
            if name.endswith("dashboard"):  # the pCSAT card sits below the first screen
                page.locator("#pcsat-h").locator("xpath=..").screenshot(
                    path=str(DOCS / f"{name.replace('dashboard', 'pcsat')}.png")
                )
            session.close()
        session = Session(browser, s, "reviewer")
        page = session.sign_in()
        session.loaded()
        page.click("#take-next")
        page.wait_for_selector("#scorecard-form .category")
        page.locator(".category").first.focus()
        for key in "2110":
            page.keyboard.press(key)
        page.wait_for_selector("text=Draft saved")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(DOCS / "workspace.png"))
        page.get_by_role("button", name="Comment on turn 2", exact=True).click()
        page.get_by_role("dialog").get_by_label("Comment").fill("Asked for the name before greeting.")
        page.screenshot(path=str(DOCS / "workspace-comment.png"))
        session.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=400)
    args = parser.parse_args()
    settings = isolated_settings(os.environ["DATABASE_URL"], os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    s = await pipeline.start(settings)
    try:
        facts = await prepare(s, args.conversations)
        await asyncio.to_thread(photograph, s, facts)
        print(f"screenshots in {DOCS}")
    finally:
        s.stop()


if __name__ == "__main__":
    asyncio.run(main())
