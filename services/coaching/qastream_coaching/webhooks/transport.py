"""The delivery client's connections: each one goes to an address the SSRF rule has just checked.

Checking a host's DNS answer and then letting httpx resolve it again would leave a gap: a hostile DNS server
can answer a public address to the check and a private one to the connection (DNS rebinding). Here the
connection itself resolves, checks (ssrf.vetted_addresses) and connects to the checked address. The URL still
names the host, so the Host header, TLS SNI and certificate checks are the receiver's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import httpcore
import httpx

from qastream_coaching.webhooks.ssrf import vetted_addresses


class VettedBackend(httpcore.AsyncNetworkBackend):
    def __init__(
        self, allow: Sequence[IPv4Network | IPv6Network], inner: httpcore.AsyncNetworkBackend
    ) -> None:
        self.allow = allow
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await vetted_addresses(host, port, self.allow)
        last: Exception | None = None
        for ip in addresses:  # as a resolver-using connect would: the next address if one refuses
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host!r} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def webhook_client(allow: Sequence[IPv4Network | IPv6Network], timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client that follows no redirects and connects only to addresses the SSRF rule allows."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx (0.28) has no public way to hand httpcore a network backend: its pool's is wrapped instead.
    # tests/unit/coaching/test_webhook_transport.py fails if this stops taking effect.
    pool = transport._pool
    pool._network_backend = VettedBackend(allow, pool._network_backend)
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False)
