"""The console in headless chromium against the real pipeline: each persona's main flow end to end, the
dashboard's figures equal to the reporting API's, role and CSRF checks, accessibility and a phone width.

The tests of this module run in order on one stack: the reviewer's review is what the agent disputes and
the QA lead resolves.
"""

from __future__ import annotations

import re
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.browser import PHONE, Session, serious_violations
from tests.browser.conftest import ACME_CONVERSATIONS, OTHER_CONVERSATIONS, deadline_in
from tests.browser.stack import LiveStack

# The module's first test also pays for starting the five services (minutes on a loaded machine).
pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(900)]

state: dict[str, Any] = {}


def api(live: LiveStack, service: str, path: str, person: str = "lead", **params: Any) -> Any:
    r = httpx.get(f"{live.url(service)}{path}", headers=live.auth(person), params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def until(check: Any, within: float = 60.0, every: float = 0.3, pause: Any = time.sleep) -> Any:
    """Polls `check()` until it returns something truthy, or fails with the last value."""
    deadline = time.monotonic() + within
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s; last value {last!r}")
        pause(every)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def fixed(x: float | None, digits: int = 2) -> str:
    """As the console's Number.toFixed: the float's exact value, a tie rounded away from zero."""
    if x is None:
        return "–"
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def pcsat_cells(r: dict[str, Any]) -> list[str]:
    """A row of the pCSAT table after its first cell, as the console must write the API's row."""
    a = r["agreement"]
    return [
        f"{r['conversations']:,}",
        fixed(r["pcsat"]),
        f"{r['pcsat_predictions']:,}",
        fixed(r["csat"]),
        f"{r['csat_responses']:,}",
        "–" if r["survey_coverage"] is None else fixed(100 * r["survey_coverage"], 1) + "%",
        f"{fixed(a['rho'])} (n {a['n']:,})"
        if a["ci_low"] is None
        else f"{fixed(a['rho'])} ({fixed(a['ci_low'])} to {fixed(a['ci_high'])}; n {a['n']:,})",
    ]


def expect_pcsat_rows(page: Page, container: str, items: list[dict[str, Any]], by: str) -> None:
    """The table's rows are the API's items, in its order, each group named in its first cell."""
    rows = page.locator(f"{container} tbody tr")
    expect(rows).to_have_count(len(items))
    for i, item in enumerate(items):
        cells = rows.nth(i).locator("td")
        if by == "week":
            expect(cells.nth(0).locator("time")).to_have_attribute("datetime", item["week"])
        elif by == "agent_id":
            expect(cells.nth(0).locator("a")).to_have_attribute("href", f"/agents/{item['agent_id']}")
        else:
            expect(cells.nth(0)).to_have_text(item[by])
        expect(cells).to_have_text([re.compile(".*"), *pcsat_cells(item)])


def rate_every_category_lowest(page: Page) -> None:
    """With the keyboard, as a reviewer would: on each category, the key of its lowest value (the
    shortcut moves on to the next category by itself)."""
    page.locator(".category").first.focus()
    for category in page.locator(".category").all():
        page.keyboard.press(category.locator("input[type=radio]").first.get_attribute("value") or "")
    expect(page.locator(".category input[type=radio]:checked")).to_have_count(
        page.locator(".category").count()
    )


def test_reviewer_takes_the_next_assignment_and_submits(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "reviewer")
    page = s.sign_in()
    assert page.url.endswith("/workspace")
    s.loaded()
    page.click("#take-next")
    expect(page.locator("#scorecard-form .category").first).to_be_visible()
    conversation = page.locator("#assignment strong").inner_text().removeprefix("Conversation ")
    # A turn comment through the page's own dialog: an empty one is refused in words, Esc cancels.
    page.get_by_role("button", name="Comment on turn 2", exact=True).click()
    dialog = page.get_by_role("dialog", name="Comment on turn 2", exact=True)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Comment")).to_be_focused()
    dialog.get_by_role("button", name="Add comment").click()
    expect(dialog.get_by_role("alert")).to_contain_text("please write something")
    s.shot("workspace-comment-dialog")
    assert not serious_violations(page), serious_violations(page)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#turn-comments")).to_contain_text("No turn comments")
    page.get_by_role("button", name="Comment on turn 2", exact=True).click()
    page.get_by_role("dialog").get_by_label("Comment").fill("The greeting skipped the customer's name.")
    page.get_by_role("dialog").get_by_role("button", name="Add comment").click()
    expect(page.locator("#turn-comments")).to_contain_text(
        "Turn 2: The greeting skipped the customer's name."
    )
    expect(page.get_by_role("button", name="Comment on turn 2", exact=True)).to_be_focused()
    # The lowest rating everywhere: the review falls below the pass mark, so coaching opens a task.
    rate_every_category_lowest(page)
    expect(page.locator("#draft-status")).to_contain_text("Draft saved", timeout=15_000)
    s.shot("workspace-rating")
    page.keyboard.press("Control+Enter")
    expect(page.locator("[data-metric=submitted-score]")).to_be_visible(timeout=15_000)
    href = page.locator("#submit-result a").get_attribute("href")
    assert href and href.startswith("/reviews/")
    state["review_id"] = href.rsplit("/", 1)[1]
    state["conversation_id"] = conversation
    review = api(live, "scoring", f"/v1/reviews/{state['review_id']}")
    assert review["kind"] == "manual" and review["reviewer_id"] == "rev-1"
    assert review["conversation_id"] == conversation
    assert review["auto_failed"] and review["score"] == 0
    assert [(c["turn"], c["text"]) for c in review["comments"]] == [
        (1, "The greeting skipped the customer's name.")
    ]
    assert not s.errors, s.errors
    s.close()


def test_agent_disputes_the_review(live: LiveStack, chrome: Browser) -> None:
    review = api(live, "scoring", f"/v1/reviews/{state['review_id']}")
    owner = "agent" if review["agent_id"] == "agent-1" else "agent2"
    state["owner"] = owner
    s = Session(chrome, live, owner)
    page = s.sign_in()
    assert page.url.endswith(f"/agents/{review['agent_id']}")
    s.loaded()
    page.click(f"a[href='/reviews/{state['review_id']}']")
    s.loaded()
    expect(page.locator(".turn").first).to_be_visible()
    s.shot("agent-review")
    # The critical category: rated lowest it zeroes the review, so accepting the dispute moves the score.
    card = api(
        live, "scoring", f"/v1/scorecards/{review['scorecard_id']}/versions/{review['scorecard_version']}"
    )
    category = next(c["category_id"] for g in card["groups"] for c in g["categories"] if c["critical"])
    assert review["auto_failed"] and review["score"] == 0
    state["category"] = category
    page.select_option("#dispute-category", category)
    page.fill("#dispute-reason", "I read the disclosure word for word in turn 3.")
    page.click("#open-dispute button[type=submit]")
    expect(page.locator("#dispute-form")).to_contain_text("Dispute opened")
    disputes = api(live, "scoring", "/v1/disputes", status="open")["items"]
    assert [(d["review_id"], d["category_id"]) for d in disputes] == [(state["review_id"], category)]
    assert not s.errors, s.errors
    s.close()


def test_lead_accepts_and_the_dashboard_changes_live(live: LiveStack, chrome: Browser) -> None:
    until(lambda: api(live, "reporting", "/v1/metrics/quality", kind="manual")["items"][0]["reviews"] == 1)
    board = Session(chrome, live, "lead")
    board.sign_in()
    dashboard = board.open("/dashboard")
    iqs = dashboard.locator("[data-metric=iqs]")
    before = pct(api(live, "reporting", "/v1/metrics/quality", **dashboard_filters())["items"][0]["iqs"])
    expect(iqs).to_have_text(before)
    dashboard.evaluate("window.__sameDocument = true")  # gone if the page reloads
    desk = Session(chrome, live, "lead")
    page = desk.sign_in()
    desk.open("/disputes")
    page.click("text=Resolve…")
    page.select_option("select[id^=out-]", "accepted")
    last = page.locator("select[id^=val-] option:not([value=na])").last.get_attribute("value")
    page.select_option("select[id^=val-]", last)
    page.fill("textarea[id^=com-]", "Agreed: the disclosure was read in full.")
    page.click("form.resolve button[type=submit]")
    expect(page.locator("#dispute-list")).to_contain_text("Resolved", timeout=15_000)
    desk.shot("disputes-resolved")
    # The dashboard, never reloaded, shows the revised review's effect.
    expect(iqs).not_to_have_text(before, timeout=60_000)
    assert dashboard.evaluate("window.__sameDocument") is True
    after = api(live, "reporting", "/v1/metrics/quality", **dashboard_filters())["items"][0]["iqs"]
    expect(iqs).to_have_text(pct(after))
    board.shot("dashboard")
    assert not board.errors and not desk.errors, board.errors + desk.errors
    board.close()
    desk.close()


def dashboard_filters() -> dict[str, Any]:
    """What the dashboard sends by default: the last 90 days."""
    from datetime import UTC, datetime, timedelta

    return {"from": (datetime.now(UTC) - timedelta(days=89)).date().isoformat()}


def test_dashboard_figures_equal_the_reporting_api(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    s.sign_in()
    page = s.open("/dashboard")
    # Categories by the scorecard's names, in the breakdown and the agreement table.
    names = {
        c["category_id"]: c["name"]
        for card in api(live, "scoring", "/v1/scorecards")
        for g in card["groups"]
        for c in g["categories"]
    }
    default = dashboard_filters()
    rated = api(live, "reporting", "/v1/metrics/categories", group_by="category_id", **default)["items"]
    shown = page.locator("#categories .bar-label").all_inner_texts()
    assert shown == [names[r["category_id"]] for r in rated]
    assert set(shown) != {r["category_id"] for r in rated}
    agreed = api(live, "reporting", "/v1/metrics/agreement", group_by="category_id", **default)["items"]
    expect(page.locator("#agreement tbody tr td:first-child")).to_have_text(
        [names[a["category_id"]] for a in agreed]
    )
    team = "team-a"
    page.fill("#f-team", team)
    page.select_option("#f-range", "30")
    page.click("#filters button[type=submit]")
    s.loaded(2)
    from datetime import UTC, datetime, timedelta

    params = {"team": team, "from": (datetime.now(UTC) - timedelta(days=29)).date().isoformat()}
    q = api(live, "reporting", "/v1/metrics/quality", **params)["items"][0]
    c = api(live, "reporting", "/v1/metrics/customer", **params)["items"][0]
    expect(page.locator("[data-metric=iqs]")).to_have_text(pct(q["iqs"]))
    expect(page.locator("[data-metric=pass_rate]")).to_have_text(pct(q["pass_rate"]))
    expect(page.locator("[data-metric=auto_fail_rate]")).to_have_text(pct(q["auto_fail_rate"]))
    expect(page.locator("[data-metric=reviews]")).to_have_text(f"{q['reviews']:,}")
    expect(page.locator("[data-metric=coverage_manual]")).to_have_text(pct(c["coverage_manual"]))
    agents = api(live, "reporting", "/v1/metrics/quality", group_by="agent_id", limit=25, **params)["items"]
    rows = page.locator("#agents tbody tr")
    expect(rows).to_have_count(len(agents))
    for a in agents:
        row = page.locator("#agents tbody tr", has=page.locator(f"a[href='/agents/{a['agent_id']}']"))
        expect(row.locator("td").nth(2)).to_have_text(pct(a["iqs"]))
    # The QA-vs-CSAT scatter: one dot per agent with both figures; a dot opens the agent.
    by_agent = {"group_by": "agent_id", **params}
    iqs = {
        a["agent_id"]: a["iqs"] for a in api(live, "reporting", "/v1/metrics/quality", **by_agent)["items"]
    }
    csat = {
        a["agent_id"]: a["csat"] for a in api(live, "reporting", "/v1/metrics/customer", **by_agent)["items"]
    }
    plotted = sorted(a for a in iqs if iqs[a] is not None and csat.get(a) is not None)
    assert plotted, "the fixture gives agents CSAT answers"
    dots = page.locator("#csat svg a")
    expect(dots).to_have_count(len(plotted))
    assert sorted((d.get_attribute("href") or "").rsplit("/", 1)[1] for d in dots.all()) == plotted
    corr = api(live, "reporting", "/v1/metrics/csat-correlation", team=team, **{"from": params["from"]})[
        "items"
    ][0]
    assert corr["ci_low"] is not None, "the fixture has enough scored conversations with a survey answer"
    expect(page.locator("[data-metric=csat_rho]")).to_contain_text(
        f"{fixed(corr['rho'])} (95% interval {fixed(corr['ci_low'])} to {fixed(corr['ci_high'])}) "
        f"over {corr['n']:,} conversations"
    )
    s.shot("dashboard-filtered")
    # A live refresh redraws the chart under a keyboard user: the dot they are on keeps the focus.
    dots.first.focus()
    focused = dots.first.get_attribute("href")
    drawn = int(page.evaluate("Number(document.body.dataset.loaded || 0)"))
    page.evaluate("document.querySelector('#filters').requestSubmit()")
    s.loaded(drawn + 1)
    assert page.evaluate("document.activeElement.getAttribute('href')") == focused
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/agents/"))
    assert page.url.rsplit("/", 1)[1] in plotted
    assert not s.errors, s.errors
    s.close()


def test_an_earlier_load_answering_late_never_replaces_a_later_one(live: LiveStack, chrome: Browser) -> None:
    """A live refresh and a changed grouping both reload a panel: whichever answer comes last, the panel shows
    the later request's (a stale one once left the pCSAT table on the previous grouping)."""
    s = Session(chrome, live, "lead")
    s.sign_in()
    page = s.open("/dashboard")
    shown = page.evaluate(
        """async () => {
          const { load } = await import("/static/console.js");
          const box = document.createElement("div");
          document.body.append(box);
          let answer;
          const earlier = load(box, () => new Promise((resolve) => { answer = resolve; }));
          await load(box, async () => "later");
          answer("earlier");
          await earlier;
          return [box.textContent, box.getAttribute("aria-busy")];
        }"""
    )
    assert shown == ["later", None]
    assert not s.errors, s.errors
    s.close()


def test_dashboard_filters_go_only_to_the_figures_they_narrow(live: LiveStack, chrome: Browser) -> None:
    """A scorecard version and a channel narrow the QA figures; CSAT, pCSAT, disputes and coaching are not kept
    per version (disputes and coaching not per channel either), so they stay whole, and the page says so,
    where their APIs would refuse the filter and the cards would show errors."""
    s = Session(chrome, live, "lead")
    s.sign_in()
    page = s.open("/dashboard")
    version = str(api(live, "scoring", "/v1/scorecards")[0]["version"])
    page.fill("#f-version", version)
    page.select_option("#f-channel", "chat")
    drawn = int(page.evaluate("Number(document.body.dataset.loaded || 0)"))
    page.click("#filters button[type=submit]")
    s.loaded(drawn + 1)
    expect(page.locator("main .error:not([hidden])")).to_have_count(0)
    note = page.locator("#filters-note")
    expect(note).to_contain_text(
        "The scorecard version filter does not apply to coverage and CSAT, QA score vs CSAT"
    )
    expect(note).to_contain_text("The channel filter does not apply to disputes, coaching")
    scope = {**dashboard_filters(), "channel": "chat"}
    q = api(live, "reporting", "/v1/metrics/quality", scorecard_version=version, **scope)["items"][0]
    c = api(live, "reporting", "/v1/metrics/customer", **scope)["items"][0]
    expect(page.locator("[data-metric=iqs]")).to_have_text(pct(q["iqs"]))
    expect(page.locator("[data-metric=coverage_manual]")).to_have_text(pct(c["coverage_manual"]))
    assert not s.errors, s.errors
    s.close()


def within(x: float, ci: list[float]) -> str:
    return f"{fixed(x, 3)} ({fixed(ci[0], 3)}–{fixed(ci[1], 3)})"


def signed(x: float) -> str:
    return ("+" if x > 0 else "") + fixed(x, 3)


def test_dashboard_pcsat_equals_the_apis_beside_its_validity(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    s.sign_in()
    page = s.open("/dashboard")
    default = dashboard_filters()
    whole = api(live, "reporting", "/v1/metrics/pcsat", **default)["items"][0]
    # This tenant's conversations only: the other tenant's agent-1 of its team-a never counts here.
    assert whole["conversations"] == ACME_CONVERSATIONS
    assert whole["pcsat_predictions"] and whole["csat_responses"], "the fixture's conversations have both"
    card = page.locator("#pcsat")
    agreement = whole["agreement"]
    for metric, text in {
        "pcsat": fixed(whole["pcsat"]),
        "pcsat_predictions": f"{whole['pcsat_predictions']:,}",
        "pcsat_conversations": f"{whole['conversations']:,}",
        "pcsat_csat": fixed(whole["csat"]),
        "csat_responses": f"{whole['csat_responses']:,}",
        "survey_coverage": fixed(100 * whole["survey_coverage"], 1) + "%",
        "pcsat_pairs": f"{agreement['n']:,}",
    }.items():
        expect(card.locator(f"[data-metric={metric}]")).to_have_text(text)
    if agreement["rho"] is None:
        expect(card).to_contain_text("Too few conversations have both")
    else:
        expect(card.locator("[data-metric=pcsat_rho]")).to_have_text(fixed(agreement["rho"]))
        expect(card.locator("[data-metric=pcsat_rho_interval]")).to_have_text(
            f"{fixed(agreement['ci_low'])} to {fixed(agreement['ci_high'])}"
        )
    # Predicted and survey figures are styled apart.
    assert card.locator("[data-metric=pcsat]").get_attribute("class") == "predicted"
    assert card.locator("[data-metric=pcsat_csat]").get_attribute("class") == "survey"
    for by in ("team", "agent_id", "week"):
        page.select_option("#pcsat-by", by)
        items = api(live, "reporting", "/v1/metrics/pcsat", group_by=by, limit=100, **default)["items"]
        expect_pcsat_rows(page, "#pcsat-groups", items, by)
    # Its validity: the model document's figures on the half it was not fitted on, each bin's n shown.
    doc = api(live, "scoring", "/v1/pcsat/model")
    (held,) = [v for v in doc["validity"].values() if v["fitted"] is False]
    bins = [b for b in held["reliability"] if b["n"]]
    validity = page.locator("#pcsat-validity")
    expect(validity.locator("[data-metric=pcsat_model_version]")).to_have_text(doc["version"])
    expect(validity.locator("[data-metric=pcsat_labelled]")).to_have_text(f"{held['labelled']:,}")
    expect(validity.locator("[data-metric=reliability_n]")).to_have_text([f"{b['n']:,}" for b in bins])
    expect(validity.locator("svg.reliability circle")).to_have_count(len(bins))
    expect(validity.locator("svg.reliability text", has_text=re.compile(r"^n \d"))).to_have_text(
        [f"n {b['n']:,}" for b in bins]
    )
    aucs = validity.locator("table").first.locator("tbody tr")
    for row, (said, q) in enumerate(
        (("Task not done", "task_not_done"), ("Not calm and helpful", "not_calm_helpful"))
    ):
        ci = held["auc_intervals"][q]
        d_lo, d_hi = ci["difference_ci95"]
        expect(aucs.nth(row).locator("td")).to_have_text(
            [
                said,
                within(held[f"auc_{q}"], ci["pcsat_ci95"]),
                within(held[f"review_score_auc_{q}"], ci["review_score_ci95"]),
                f"{signed(ci['difference'])} ({signed(d_lo)} to {signed(d_hi)})",
                "pCSAT better" if d_lo > 0 else "review score better" if d_hi < 0 else "no clear difference",
                f"{held[f'negatives_{q}']:,}",
            ]
        )
    expect(validity).to_contain_text(f"Brier score {fixed(held['brier'], 3)}")
    expect(validity).to_contain_text("fitted on public STAR chats, not on your conversations")
    expect(validity.locator("[data-metric=pcsat_reading]")).to_contain_text(
        f"of the {bins[-1]['n']:,} conversations predicted"
    )
    s.shot("dashboard-pcsat")
    assert not s.errors, s.errors
    s.close()


def test_an_agent_sees_only_their_own_pcsat(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "agent")
    page = s.sign_in()
    assert page.url.endswith("/agents/agent-1")
    s.loaded()
    weeks = api(
        live, "reporting", "/v1/metrics/pcsat", person="agent", agent_id="agent-1", group_by="week", limit=100
    )["items"]
    # agent-1 holds every other conversation of this tenant, and none of the other tenant's agent-1's.
    assert sum(w["conversations"] for w in weeks) == ACME_CONVERSATIONS // 2
    expect_pcsat_rows(page, "#agent-pcsat", weeks, "week")
    # The session's own calls, as a page script would make them: grouped by agent, only their row;
    # another agent's scope is refused.
    seen = page.evaluate(
        """async (u) => {
            const get = (q) => fetch(u + '/v1/metrics/pcsat?' + q, {credentials: 'include'})
                .then(async r => [r.status, await r.json()]);
            return {mine: await get('group_by=agent_id'), other: (await get('agent_id=agent-2'))[0]};
        }""",
        live.url("reporting"),
    )
    assert seen["mine"][0] == 200 and seen["other"] == 403
    assert [(i["agent_id"], i["conversations"]) for i in seen["mine"][1]["items"]] == [
        ("agent-1", ACME_CONVERSATIONS // 2)
    ]
    # The other tenant's conversations are there (its lead sees them), just never in this tenant's figures.
    theirs = api(live, "reporting", "/v1/metrics/pcsat", person="other_lead", group_by="agent_id")["items"]
    assert [(i["agent_id"], i["conversations"]) for i in theirs] == [("agent-1", OTHER_CONVERSATIONS)]
    s.shot("agent-pcsat")
    assert not s.errors, s.errors
    s.close()


def test_agent_search_asks_the_server(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    s.sign_in()
    page = s.open("/dashboard")
    expect(page.locator("#agents tbody tr")).to_have_count(2)
    with page.expect_response(lambda r: "agent_contains=GENT-2" in r.url and r.status == 200):
        page.get_by_label("Search agents").fill("GENT-2")
    rows = page.locator("#agents tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a")).to_have_text("agent-2")
    page.get_by_label("Search agents").fill("nobody-by-this-name")
    expect(page.locator("#agents")).to_contain_text("No agent id contains “nobody-by-this-name”")
    page.get_by_label("Search agents").fill("")
    expect(page.locator("#agents tbody tr")).to_have_count(2)
    assert not s.errors, s.errors
    s.close()


def test_calibration_with_three_raters_shows_alpha(live: LiveStack, chrome: Browser) -> None:
    reviews = api(live, "scoring", "/v1/reviews", limit=20)["items"]
    convs = list(dict.fromkeys(r["conversation_id"] for r in reviews))[:2]
    lead = Session(chrome, live, "lead")
    page = lead.sign_in()
    lead.open("/calibration")
    page.fill("#c-convs", ", ".join(convs))
    page.fill("#c-raters", "rev-1, rev-2, rev-3")
    page.fill("#c-bench", "rev-1")
    page.fill("#c-deadline", deadline_in(3))
    page.click("#create-session button[type=submit]")
    expect(page.locator("#create-result")).to_contain_text("Session created")
    # Two raters agree; the third rates one step lower on the first conversation: α below 1, but defined.
    for person, shift in (("reviewer", 0), ("reviewer2", 0), ("reviewer3", 1)):
        r = Session(chrome, live, person)
        rp = r.sign_in()
        r.open("/calibration")
        rp.locator("#session-list button.link").first.click()
        for n in range(len(convs)):
            form = rp.locator("#session form").first
            expect(form).to_be_visible()
            for fs in form.locator("fieldset").all():
                radios = fs.locator("input[type=radio]:not([value=na])")
                count = radios.count()
                radios.nth(max(0, count - 1 - (shift if n == 0 else 0))).check()
            form.locator("button[type=submit]").click()
            expect(rp.locator("#session .notice").nth(n)).to_be_visible(timeout=15_000)
        assert not r.errors, r.errors
        r.close()
    lead.open("/calibration")
    page.locator("#session-list button.link").first.click()
    page.click("text=Close session and compute α")
    alpha = page.locator("[data-metric=alpha]")
    expect(alpha).to_have_text(re.compile(r"^-?\d\.\d\d$"), timeout=15_000)
    sessions = api(live, "scoring", "/v1/calibrations")["items"]
    assert alpha.inner_text() == f"{sessions[0]['results']['alpha']:.2f}"
    expect(page.locator("#session")).to_contain_text("Where reviewers split")
    lead.shot("calibration-results")
    assert not lead.errors, lead.errors
    lead.close()


def test_team_lead_completes_a_coaching_task(live: LiveStack, chrome: Browser) -> None:
    # agent-1 is in team-a, the team lead's team; their reviews below the pass mark opened tasks.
    until(lambda: api(live, "coaching", "/v1/tasks", person="agent", status="open")["items"])
    agent = Session(chrome, live, "agent")
    ap = agent.sign_in()
    agent.open("/coaching")
    ap.locator("#task-list button", has_text="Acknowledge").first.click()
    acknowledged = until(
        lambda: api(live, "coaching", "/v1/tasks", person="team_lead", status="acknowledged")["items"]
    )
    assert len(acknowledged) == 1 and acknowledged[0]["agent_id"] == "agent-1"
    agent.close()
    lead = Session(chrome, live, "team_lead")
    page = lead.sign_in()
    lead.open("/coaching")
    page.locator("#task-list button", has_text="Complete…").click()
    page.fill("textarea[id^=complete-]", "Walked through the greeting and the closing together.")
    page.click("text=Complete task")
    lead.loaded(2)
    done = api(live, "coaching", "/v1/tasks", person="team_lead", status="completed")["items"]
    assert [(t["task_id"], t["notes"]) for t in done] == [
        (acknowledged[0]["task_id"], "Walked through the greeting and the closing together.")
    ]
    expect(page.locator("#task-list")).to_contain_text("Notes: Walked through")
    lead.shot("coaching")
    assert not lead.errors, lead.errors
    lead.close()


def test_lead_writes_a_sampling_plan_with_the_form(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    page = s.sign_in()
    s.open("/plans")
    page.get_by_role("button", name="Start a new plan").click()
    page.get_by_label("Plan id").fill("unhappy-voice")
    page.get_by_label("Name", exact=True).fill("Unhappy voice customers")
    page.get_by_label("Priority").fill("10")
    page.get_by_label("Conversations matching rules").check()
    page.get_by_label("Rule", exact=True).select_option(label="CSAT at most")
    page.get_by_label("score (1–5)").fill("9")
    page.get_by_role("button", name="Add a rule").click()
    expect(page.get_by_label("Rule", exact=True).nth(1)).to_be_focused()
    page.get_by_label("Rule", exact=True).nth(1).select_option(label="Escalated")
    page.get_by_label("voice", exact=True).check()
    page.get_by_role("button", name="Save as a new version").click()
    # Caught before sending, named beside the field, and the field is focused.
    expect(page.locator("#plan-problems")).to_contain_text("Rule 1 (CSAT at most): must be at most 5")
    expect(page.get_by_label("score (1–5)")).to_be_focused()
    expect(page.get_by_label("score (1–5)")).to_have_attribute("aria-invalid", "true")
    s.shot("plans-problem")
    page.get_by_label("score (1–5)").fill("2")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#plan-result")).to_contain_text("Saved unhappy-voice version 1")
    row = page.locator("#plan-list tbody tr", has_text="unhappy-voice")
    expect(row).to_contain_text("CSAT at most 2 or Escalated (voice only)")
    plan = next(p for p in api(live, "sampler", "/v1/plans") if p["plan_id"] == "unhappy-voice")
    assert (plan["kind"], plan["priority"], plan["scope"]["channels"]) == ("targeted", 10, ["voice"])
    assert [r["kind"] for r in plan["rules"]] == ["csat_at_most", "escalated"] and plan["rules"][0][
        "max"
    ] == 2
    # An edit is a new version; a clash the sampler finds (same priority as an overlapping plan) is in words.
    row.get_by_role("button", name="Edit unhappy-voice").click()
    expect(page.get_by_label("Plan id")).to_have_attribute("readonly", "")
    page.get_by_label("Of the matching conversations, pick (%)").fill("50")
    page.get_by_label("Priority").fill("100")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#plan-result [role=alert]")).to_contain_text(
        "'everything' and 'unhappy-voice' overlap"
    )
    page.get_by_label("Priority").fill("10")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#plan-result")).to_contain_text("Saved unhappy-voice version 2")
    row.get_by_role("button", name="Pause unhappy-voice").click()
    expect(row.locator(".badge")).to_have_text("paused")
    plan = next(p for p in api(live, "sampler", "/v1/plans") if p["plan_id"] == "unhappy-voice")
    assert (plan["version"], plan["rate"], plan["paused"]) == (3, 0.5, True)
    s.shot("plans")
    assert not serious_violations(page), serious_violations(page)
    assert not s.errors, s.errors
    s.close()


def test_an_agent_cannot_reach_another_agents_pages_or_data(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "agent")
    page = s.sign_in()
    response = page.goto(live.console + "/agents/agent-2")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("This page is not open to you")
    # The session's own calls to the APIs, as a page script would make them.
    seen = page.evaluate(
        """async (u) => {
            const get = (url) => fetch(url, {credentials: 'include'}).then(async r => [r.status, await r.json()]);
            return {
              metrics: await get(u.reporting + '/v1/metrics/quality?agent_id=agent-2'),
              reviews: await get(u.scoring + '/v1/reviews?agent_id=agent-2'),
              dashboard: (await fetch('/dashboard', {credentials: 'include'})).status,
            };
        }""",
        {"reporting": live.url("reporting"), "scoring": live.url("scoring")},
    )
    assert seen["metrics"][0] == 403
    assert seen["reviews"] == [200, {"items": [], "next_cursor": None}]
    assert seen["dashboard"] == 403
    s.close()


def test_a_forged_csrf_token_is_refused(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    page = s.sign_in()
    s.open("/plans")
    statuses = page.evaluate(
        """async (sampler) => {
            const real = document.cookie.split('; ').find(c => c.startsWith('qa_csrf=')).slice(8);
            const post = (token) => fetch(sampler + '/v1/plans/everything/pause', {
                method: 'POST', credentials: 'include', headers: token ? {'X-CSRF-Token': token} : {}});
            const forged = (await post('forged' + real.slice(6))).status;
            const missing = (await post(null)).status;
            const plans = await (await fetch(sampler + '/v1/plans', {credentials: 'include'})).json();
            return {forged, missing, paused: plans.find(p => p.plan_id === 'everything').paused};
        }""",
        live.url("sampler"),
    )
    assert statuses == {"forged": 403, "missing": 403, "paused": False}
    s.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_pages_have_no_serious_accessibility_violations(
    live: LiveStack, chrome: Browser, viewport: str
) -> None:
    pages = {
        "lead": ["/dashboard", "/disputes", "/calibration", "/plans", f"/reviews/{state['review_id']}"],
        "reviewer": ["/workspace"],
        "team_lead": ["/coaching"],
        "agent": ["/agents/agent-1"],
    }
    found: dict[str, Any] = {}
    for person, paths in pages.items():
        s = Session(chrome, live, person, **({"viewport": PHONE} if viewport == "phone" else {}))
        s.sign_in()
        for path in paths:
            page = s.open(path)
            if viewport == "phone":
                # Nothing wider than the phone: no sideways scrolling of the page itself.
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{path} is {width}px wide on a {PHONE['width']}px phone"
                s.shot(f"phone{path.replace('/', '-')}")
            if violations := serious_violations(page):
                found[f"{person} {path}"] = violations
        assert not s.errors, s.errors
        s.close()
    assert not found, found


def test_signed_out_pages_send_you_to_sign_in(live: LiveStack, chrome: Browser) -> None:
    s = Session(chrome, live, "lead")
    page = s.page
    page.goto(live.console + "/dashboard")
    assert "/signin?next=/dashboard" in page.url
    page.fill("#api-key", "qa_0000000000000000_" + "x" * 43)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("main .error:not([hidden])")).to_contain_text("not valid")
    s.shot("signin")
    s.sign_in()
    s.loaded()
    s.close()


def await_held(page: Page, routes: list[Route]) -> None:
    """Waits until a route handler has held a request. Playwright runs handlers only while it waits, so
    the pause is the page's own, not a sleep."""
    until(lambda: routes, within=30, every=0.02, pause=lambda s: page.wait_for_timeout(s * 1000))


def test_signing_out_lands_on_sign_in_even_with_requests_in_flight(live: LiveStack, chrome: Browser) -> None:
    """A dashboard request answered 401 while signing out must not turn the sign-out's "/signin" into
    "/signin?next=/dashboard". The test holds that request and the sign-out's DELETE, and answers the
    first while the second is pending: the order in which the race was lost."""
    s = Session(chrome, live, "lead")
    page = s.sign_in()
    s.loaded()
    groups: list[Route] = []
    signing_out: list[Route] = []
    page.route(re.compile(r"/v1/metrics/pcsat\?"), lambda route: groups.append(route))
    page.route(
        re.compile(r"/v1/session$"),
        lambda route: signing_out.append(route) if route.request.method == "DELETE" else route.continue_(),
    )
    page.select_option("#pcsat-by", "week")
    await_held(page, groups)
    page.click("#sign-out")
    await_held(page, signing_out)
    for held in groups:
        held.fulfill(status=401, json={"detail": "no session"})
    expect(page.locator("#pcsat-groups .error")).to_contain_text("signed out")
    assert "/dashboard" in page.url
    signing_out[0].continue_()
    page.wait_for_url(re.compile(r"/signin"))
    expect(page.locator("#signin-form")).to_be_visible()
    assert page.url.endswith("/signin"), page.url
    page.goto(live.console + "/dashboard")
    assert "/signin?next=/dashboard" in page.url
    s.close()
