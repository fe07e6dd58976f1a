"""The demo's reporting table must print whatever the metrics API returns, including estimates without an interval."""

import httpx
import pytest

from qastream_shared.demo import report


def _metrics_api(quality: list[dict], weighted: list[dict]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/quality"):
            return httpx.Response(
                200, json={"items": quality if request.url.params["kind"] == "manual" else []}
            )
        if path.endswith("/design-weighted"):
            return httpx.Response(200, json={"items": weighted})
        return httpx.Response(200, json={"items": []})

    return httpx.MockTransport(handle)


async def test_a_single_review_has_an_iqs_but_no_interval(capsys: pytest.CaptureFixture[str]) -> None:
    quality = [{"reviews": 1, "iqs": 0.8, "iqs_ci_low": None, "iqs_ci_high": None, "pass_rate": 1.0}]
    weighted = [
        {"reviews": 1, "raw_mean": {"mean": 0.8}, "hajek": {"estimate": 0.8, "ci_low": None, "ci_high": None}}
    ]
    async with httpx.AsyncClient(transport=_metrics_api(quality, weighted)) as http:
        await report.reporting(http, {"reporting": "http://reporting"})
    out = capsys.readouterr().out
    assert "80.0% (too few for a CI)" in out
    assert "design-weighted" in out


async def test_an_interval_is_shown_when_there_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    quality = [{"reviews": 40, "iqs": 0.75, "iqs_ci_low": 0.7, "iqs_ci_high": 0.8, "pass_rate": 0.9}]
    async with httpx.AsyncClient(transport=_metrics_api(quality, [])) as http:
        await report.reporting(http, {"reporting": "http://reporting"})
    assert "75.0% (70.0%–80.0%)" in capsys.readouterr().out
