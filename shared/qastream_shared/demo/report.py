"""What the demo prints: each service's view of the run, read back through its public API."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from rich.table import Table

from qastream_shared.demo.ui import console

# When each kind of plan decides: what a reader needs to make sense of the counts.
WHEN_DECIDED = {
    "random": "on arrival",
    "targeted": "when its trigger arrives",
    "stratified": "when a period closes",
}
PENDING_NOTE = (
    "{plan}: quota slots are decided when each {by}'s {period} closes in event time. The newest {period} "
    "of every {by} is still open, so its picks are pending until later conversations move event time past it."
)


async def autoqa(http: httpx.AsyncClient, urls: dict[str, str]) -> None:
    summary = await http.get(f"{urls['scoring']}/v1/reviews/summary", params={"by": "team", "limit": 500})
    table = Table("team", "reviews", "IQS", "pass rate", "auto-fail rate", title="AutoQA quality per team")
    for r in summary.json()["items"]:
        table.add_row(
            str(r["group"]),
            str(r["reviews"]),
            f"{r['iqs']:.1%}",
            f"{r['pass_rate']:.1%}",
            f"{r['auto_fail_rate']:.1%}",
        )
    console.print(table)


async def sampling(http: httpx.AsyncClient, urls: dict[str, str], limit: int | None) -> None:
    plans = {p["plan_id"]: p for p in (await http.get(f"{urls['sampler']}/v1/plans")).json()}
    samples = (
        await http.get(f"{urls['sampler']}/v1/samples", params={"purpose": "manual", "limit": 1000})
    ).json()
    by_plan = Counter((s["plan_id"], s["rule"] or "-") for s in samples)
    table = Table("plan", "rule", "picked for people", "decides", title="Manual review sample")
    for (plan_id, rule), n in sorted(by_plan.items()):
        kind = plans.get(plan_id, {}).get("kind", "")
        table.add_row(plan_id, rule, str(n), WHEN_DECIDED.get(kind, ""))
    for plan_id, plan in plans.items():
        if not any(p == plan_id for p, _ in by_plan):
            table.add_row(plan_id, "-", "0", WHEN_DECIDED.get(plan.get("kind", ""), ""))
    console.print(table)
    for plan_id, plan in plans.items():
        if plan.get("kind") == "stratified":
            note = PENDING_NOTE.format(plan=plan_id, by=plan.get("by"), period=plan.get("period"))
            console.print(f"[dim]{note}[/]")
    console.print(
        "[dim]Why a conversation was or was not picked: `uv run qa samples explain ID --tenant T`.[/]"
    )


async def reporting(http: httpx.AsyncClient, urls: dict[str, str]) -> None:
    base = f"{urls['reporting']}/v1/metrics"
    table = Table("kind", "reviews", "IQS (95% CI)", "pass rate", title="Reporting: quality by who scored it")
    for kind in ("auto", "manual"):
        body = (await http.get(f"{base}/quality", params={"kind": kind})).json()
        for r in body.get("items", []):
            ci = _estimate(r.get("iqs"), r.get("iqs_ci_low"), r.get("iqs_ci_high"))
            rate = f"{r['pass_rate']:.1%}" if r.get("pass_rate") is not None else "-"
            table.add_row(kind, str(r["reviews"]), ci, rate)
    console.print(table)
    weighted = (await http.get(f"{base}/design-weighted")).json()
    for r in weighted.get("items", []):
        raw, hajek = r.get("raw_mean") or {}, r.get("hajek") or {}
        if hajek.get("estimate") is not None and raw.get("mean") is not None:
            console.print(
                f"manual sample of {r.get('reviews')}: raw mean IQS {raw['mean']:.1%}; design-weighted "
                f"(Hájek, by each pick's inclusion probability) "
                f"{_estimate(hajek['estimate'], hajek.get('ci_low'), hajek.get('ci_high'))}"
            )
    for metric in ("disputes", "calibrations", "coaching"):
        items = (await http.get(f"{base}/{metric}")).json().get("items", [])
        for row in items:
            console.print(f"{metric}: {_fmt(row)}")
    fresh = weighted.get("freshness")
    if fresh:
        console.print(f"[dim]reporting freshness: {_fmt(fresh) if isinstance(fresh, dict) else fresh}[/]")


def _estimate(value: float | None, low: float | None, high: float | None) -> str:
    """A share with its interval; a sample too small to bootstrap has no interval, so none is shown."""
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.1%} (too few for a CI)"
    return f"{value:.1%} ({low:.1%}–{high:.1%})"


def _fmt(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def console_and_keys(urls: dict[str, str], keys: dict[str, str]) -> None:
    console.print(f"\n[bold]Web console:[/] {urls['reporting']}/signin: sign in with one of these keys")
    for who, key in keys.items():
        console.print(f"  {who:26} {key}", overflow="ignore", crop=False, soft_wrap=True)
    console.print("APIs (OpenAPI docs at /docs):")
    for name, url in urls.items():
        console.print(f"  {name:9} {url}/docs")
