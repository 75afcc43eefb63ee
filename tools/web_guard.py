"""Where the web fetcher may go: http(s) URLs whose host resolves only to public addresses.

An account list or a redirect can name any URL, and a fetcher that follows it blindly can be
steered into the machine's own network (a cloud metadata endpoint, an admin page on loopback).
So every URL, and every redirect hop, is checked after DNS resolution: each address the name
resolves to must be globally routable (`ipaddress`'s `is_global`, which excludes loopback,
private, link-local, shared, reserved and documentation ranges; an IPv4-mapped IPv6 address is
judged as the IPv4 address it carries). The fetcher checks the address it actually connected to
as well, so a name that resolves differently the second time (DNS rebinding) still gets no page
read. Only tests turn this off, with `allow_private`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["Refused", "check_url", "check_address", "origin"]


class Refused(Exception):
    """The URL may not be fetched; the message says why, for `Page.error`."""


def origin(url: str) -> str:
    """`scheme://host:port`, the scope of robots.txt and of the per-site rate limit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def check_address(address: str, *, allow_private: bool) -> None:
    """Raise `Refused` unless `address` (an IP literal) is public, or private ones are allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not allow_private and not ip.is_global:
        raise Refused(f"private address: {ip} is not a public internet address")


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise `Refused` unless `url` is http(s) with a host that resolves to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"not http(s): {parts.scheme or 'no'} scheme")
    host = parts.hostname
    if not host:
        raise Refused("no host in the URL")
    if parts.username or parts.password:
        raise Refused("credentials in the URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("bad port in the URL") from None
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise Refused(f"DNS: {host} does not resolve ({exc})") from None
        addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"DNS: {host} has no address")
    for address in addresses:
        check_address(address, allow_private=allow_private)
