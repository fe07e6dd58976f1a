"""A request that finds every pooled database connection busy past the pool's timeout is told to come back
(503 with Retry-After), not handed a 500: overload is not a server bug (http.RetryDeadConnection)."""

import httpx
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout

from qastream_shared import http as service_http
from qastream_shared.http import PROBLEM


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    service_http.install(app)  # the middleware stack every service has

    @app.get("/busy")
    async def busy() -> None:
        raise PoolTimeout(
            "QueuePool limit of size 10 overflow 10 reached, connection timed out, timeout 30.00"
        )

    @app.get("/fine", response_class=PlainTextResponse)
    async def fine() -> str:
        return "ok"

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://svc"
    )


async def test_an_exhausted_pool_is_a_503_with_retry_after() -> None:
    async with _client() as http:
        r = await http.get("/busy")
    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["retry-after"] == "1"
    assert "no database connection came free" in r.json()["detail"]


async def test_other_requests_pass_through_untouched() -> None:
    async with _client() as http:
        r = await http.get("/fine")
    assert (r.status_code, r.text) == (200, "ok")
