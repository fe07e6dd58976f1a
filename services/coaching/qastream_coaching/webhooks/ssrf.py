"""The SSRF rule: a webhook URL must be http(s) and resolve only to public addresses, unless the operator's
allow-list (QA_WEBHOOK_ALLOW_NETWORKS) covers them. Checked when a URL is registered, and again by the
delivery client each time it connects (transport.py), on the very answer it then connects to: a DNS answer
that changes later (DNS rebinding) cannot point a delivery inside the network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit


class RefusedUrl(ValueError):
    pass


def _internal(ip: IPv4Address | IPv6Address) -> bool:
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


async def check_url(url: str, allow: Sequence[IPv4Network | IPv6Network]) -> None:
    """RefusedUrl saying why, unless `url` may receive deliveries."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl(f"scheme must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise RefusedUrl("has no host")
    if parts.username or parts.password:
        raise RefusedUrl("must not carry credentials")
    await vetted_addresses(parts.hostname, port or (443 if parts.scheme == "https" else 80), allow)


async def vetted_addresses(
    host: str, port: int, allow: Sequence[IPv4Network | IPv6Network]
) -> list[IPv4Address | IPv6Address]:
    """The addresses `host` resolves to, or RefusedUrl if any of them is internal and not allowed."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedUrl(f"host {host!r} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for ip in addresses:
        if _internal(ip) and not any(ip in net for net in allow):
            raise RefusedUrl(
                f"host {host!r} resolves to {ip}, a loopback, link-local or private address "
                "(refused unless the operator allow-list QA_WEBHOOK_ALLOW_NETWORKS permits it)"
            )
    return addresses
