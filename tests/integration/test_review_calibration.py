"""A calibration session of 4 reviewers on 10 conversations: α and alignment computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qastream_scoring.tables import reviews
from qastream_shared.events import Purpose, Role
from qastream_shared.testing import conversation, eventually
from qastream_shared.topics import ensure_topics
from tests.integration.review_workflow import in_process, issue_keys, produce_samples, sample, wait_for_key
from tests.integration.test_review_workflow import card_body, count

pytestmark = pytest.mark.integration

# Values per reviewer, conversation c0..c9: ("ok" binary, "tone" 3-point); None is N/A (ok allows it).
FIXTURE: dict[str, list[tuple[int | None, int]]] = {
    "bench": [(1, 3), (1, 3), (0, 1), (1, 2), (0, 1), (1, 3), (1, 2), (0, 2), (1, 3), (0, 1)],
    "ann": [(1, 3), (1, 2), (0, 1), (1, 2), (0, 1), (1, 3), (1, 3), (0, 2), (1, 3), (0, 1)],
    "bob": [(1, 2), (0, 3), (0, 1), (1, 2), (1, 2), (1, 3), (1, 2), (None, 1), (1, 3), (0, 2)],
    "cat": [(0, 3), (1, 3), (1, 2), (1, 1), (0, 1), (None, 3), (1, 2), (0, 2), (0, 3), (0, 1)],
}


def alpha_by_hand(units: list[list[float]], ordinal: bool) -> float:
    """Krippendorff's α from the coincidence matrix (Krippendorff 2011, sections A and D), written out.

    Each unit's values pair with each other value of the unit, weighted 1/(m_u − 1); D_o is the observed
    mean distance over those pairs, D_e the expected one over all pairable values; α = 1 − D_o/D_e.
    """
    units = [u for u in units if len(u) >= 2]
    values = sorted({v for u in units for v in u})
    o = {(c, k): 0.0 for c in values for k in values}
    for u in units:
        for i, c in enumerate(u):
            for j, k in enumerate(u):
                if i != j:
                    o[(c, k)] += 1 / (len(u) - 1)
    n_c = {c: sum(o[(c, k)] for k in values) for c in values}
    n = sum(n_c.values())

    def delta(c: float, k: float) -> float:
        if not ordinal:
            return 0.0 if c == k else 1.0
        lo, hi = sorted((c, k))
        between = sum(n_c[g] for g in values if lo <= g <= hi)
        return (between - (n_c[lo] + n_c[hi]) / 2) ** 2

    observed = sum(o[(c, k)] * delta(c, k) for c in values for k in values)
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in values for k in values) / (n - 1)
    return 1 - observed / expected


def test_alpha_by_hand_matches_the_published_example():
    """The hand formula itself, checked on Krippendorff's published data before it judges the service."""
    published = [
        [1, 1, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [5, 5, 5],
        [1, 1],
        [3],
    ]
    assert round(alpha_by_hand([[float(v) for v in u] for u in published], ordinal=False), 3) == 0.743
    assert round(alpha_by_hand([[float(v) for v in u] for u in published], ordinal=True), 3) == 0.815


def _alignment_by_hand(grader: str) -> float:
    """Σ(1 − |g − b|/max)·(max/total max) over the units both rated; max = 1 for ok, 2 for tone."""
    terms: list[tuple[float, float]] = []
    for (g_ok, g_tone), (b_ok, b_tone) in zip(FIXTURE[grader], FIXTURE["bench"], strict=True):
        if g_ok is not None and b_ok is not None:
            terms.append((1 - abs(g_ok - b_ok) / 1, 1))
        terms.append((1 - abs(g_tone - b_tone) / 2, 2))
    total = sum(m for _, m in terms)
    return sum(agree * m / total for agree, m in terms)


async def test_calibration_session_gives_the_alpha_and_alignment_computed_by_hand(settings):
    await ensure_topics(settings)
    people = {
        "lead": (Role.qa_lead, {"agent_id": "lead-1"}),
        "outsider": (Role.reviewer, {"agent_id": "zed"}),
    }
    people.update({name: (Role.reviewer, {"agent_id": name}) for name in FIXTURE})
    keys = await issue_keys(settings, "acme", people)
    async with in_process(settings) as http:
        await wait_for_key(http, keys.auth("cat"))
        lead = keys.auth("lead")
        assert (await http.put("/v1/scorecards/calib", json=card_body(), headers=lead)).status_code == 200
        convs = [conversation(f"c{i}", agent="agent-1") for i in range(10)]
        await produce_samples(settings, [sample("acme", c, Purpose.auto) for c in convs])

        async def stored_all() -> bool:
            return await count(settings, reviews) == 10

        await eventually(stored_all, within=60)
        body = {
            "name": "March calibration",
            "scorecard_id": "calib",
            "conversation_ids": [c.conversation_id for c in convs],
            "participants": list(FIXTURE),
            "benchmark_reviewer_id": "bench",
            "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        s = await http.post("/v1/calibrations", json=body, headers=lead)
        assert s.status_code == 201, s.text
        sid = s.json()["session_id"]
        assert s.json()["name"] == "March calibration"
        assert (await http.get(f"/v1/calibrations/{sid}", headers=keys.auth("outsider"))).status_code == 404
        for name, rows in FIXTURE.items():
            for i, (ok, tone) in enumerate(rows):
                ratings = [{"category_id": "ok", "value": ok}, {"category_id": "tone", "value": tone}]
                r = await http.post(
                    f"/v1/calibrations/{sid}/reviews",
                    json={"conversation_id": f"c{i}", "ratings": ratings},
                    headers=keys.auth(name),
                )
                assert r.status_code == 201, r.text
            if name == "bench":
                # Blind: before rating, a participant sees none of the others' ratings.
                seen = (await http.get(f"/v1/calibrations/{sid}", headers=keys.auth("ann"))).json()
                assert all(not c["ratings"] for c in seen["conversations"])  # ann has rated nothing yet
        seen = (await http.get(f"/v1/calibrations/{sid}", headers=keys.auth("ann"))).json()
        assert {r["reviewer_id"] for r in seen["conversations"][0]["ratings"]} == set(FIXTURE)
        closed = await http.post(f"/v1/calibrations/{sid}/close", headers=lead)
        assert closed.status_code == 200, closed.text
        results = closed.json()["results"]
        assert await count(settings, reviews) == 10  # calibration ratings never join the reviews (IQS)
    ok_units = [[float(v) for r in FIXTURE if (v := FIXTURE[r][i][0]) is not None] for i in range(10)]
    tone_units = [[float(FIXTURE[r][i][1]) for r in FIXTURE] for i in range(10)]
    assert results["alpha_by_category"]["ok"] == pytest.approx(
        alpha_by_hand(ok_units, ordinal=False), abs=1e-9
    )
    assert results["alpha_by_category"]["tone"] == pytest.approx(
        alpha_by_hand(tone_units, ordinal=True), abs=1e-9
    )
    # Overall: every (conversation, category) a unit, its value the score on 0..1 (tone 1,2,3 → 0, .5, 1).
    overall_units = [[float(v) for v in u] for u in ok_units] + [[(v - 1) / 2 for v in u] for u in tone_units]
    assert results["alpha"] == pytest.approx(alpha_by_hand(overall_units, ordinal=True), abs=1e-9)
    assert set(results["alignment"]) == {"ann", "bob", "cat"}
    for name in ("ann", "bob", "cat"):
        assert results["alignment"][name] == pytest.approx(_alignment_by_hand(name), abs=1e-12)
    # ann differs from the benchmark on two tone ratings by one point only: the closest.
    assert max(results["alignment"], key=results["alignment"].__getitem__) == "ann"
