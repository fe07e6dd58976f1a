"""The webhook client connects to the address the SSRF rule checked, not to a second DNS answer."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_network
from typing import Any

import pytest

from qastream_coaching.webhooks.ssrf import RefusedUrl
from qastream_coaching.webhooks.transport import webhook_client

HOST = "receiver.example"
CHECKED, REBOUND = "127.0.0.2", "127.0.0.1"  # both loopback: only the first is on the allow-list


class Receiver:
    """A loopback HTTP server that records each request's Host header and answers 204."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = [line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line]
        headers = {name.lower(): value for name, value in lines}
        await reader.readexactly(int(headers.get("content-length", "0")))
        self.hosts.append(headers["host"])
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[int, Receiver, Receiver]]:
    """The receiver on the checked address and one on the rebound address, on the same port."""
    checked, rebound = Receiver(), Receiver()
    first = await asyncio.start_server(checked.handle, CHECKED, 0)
    port = first.sockets[0].getsockname()[1]
    second = await asyncio.start_server(rebound.handle, REBOUND, port)
    try:
        yield port, checked, rebound
    finally:
        for server in (first, second):
            server.close()
            await server.wait_closed()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """HOST answers CHECKED the first time it is looked up and REBOUND every time after (DNS rebinding)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (HOST, HOST.encode()):  # anyio asks with the IDNA-encoded bytes
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return real(CHECKED if len(asked) == 1 else REBOUND, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield asked


async def test_delivery_reaches_the_checked_address_with_the_urls_host(
    receivers: tuple[int, Receiver, Receiver], rebinding_dns: list[str]
) -> None:
    port, checked, rebound = receivers
    async with webhook_client([ip_network(f"{CHECKED}/32")], timeout_s=10) as client:
        response = await client.post(f"http://{HOST}:{port}/hook", content=b"{}")
    assert response.status_code == 204
    assert checked.hosts == [f"{HOST}:{port}"]  # the receiver still sees its own name
    assert rebound.hosts == []
    assert rebinding_dns == [HOST]  # one answer, checked and used


async def test_an_address_outside_the_allow_list_is_refused_before_connecting(
    receivers: tuple[int, Receiver, Receiver],
) -> None:
    port, checked, rebound = receivers
    async with webhook_client([], timeout_s=10) as client:
        with pytest.raises(RefusedUrl, match=re.escape(CHECKED)):
            await client.post(f"http://{CHECKED}:{port}/hook", content=b"{}")
    assert checked.hosts == rebound.hosts == []
