"""Calls to URLs an API client named: only into networks the operator allowed (no SSRF).

A question's `callback_url` makes the gateway POST to an address a client chose. Without a
fence that is a way into whatever the gateway can reach: its own loopback services, the cloud
metadata address (169.254.169.254), the private network. So such a URL is refused at the door
(400) unless its address lies in `[server] callback_allowed_networks` (empty by default: no
callbacks), and checked again when the call is made:

- at the door, every spelling of an IP address is read the way the C library would read it
  (`0x7f.1`, `0177.0.0.1`, `2130706433`, `127.1`, `[::ffff:127.0.0.1]`) and a name is
  resolved; every address must be allowed. A URL with user information (`user@host`) is
  refused outright: it is a classic way to make a URL look like it goes elsewhere;
- at connection time a resolver drops addresses outside the networks and the socket factory
  refuses to connect to one, so a name that resolves differently later (DNS rebinding) cannot
  slip through. Redirects are not followed (`ServiceCaller` passes `allow_redirects=False`).

Operator-configured `[[routes]]` URLs are trusted and do not go through this module.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.commands import Command
from gateway.errors import ConfigError, InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Networks = tuple[IPNetwork, ...]

SETTING = "[server] callback_allowed_networks"
#: Longest wait for the name of a callback URL to resolve at the door.
RESOLVE_TIMEOUT_SECONDS = 5.0
#: What inet_aton accepts beside dotted decimal: hex, octal, and 1-3 parts (`127.1`).
_INET_ATON = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}$")


class EgressRefused(Exception):
    """A destination outside the allowed networks (or one that cannot be checked)."""


def parse_networks(values: Iterable[str], key: str = SETTING) -> Networks:
    """CIDR strings → networks; ConfigError naming `key` on a bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def host_address(host: str) -> IPAddress | None:
    """The address `host` spells, in any spelling the C library accepts; None for a name.

    IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) come back as the IPv4 address they reach.
    """
    bare = host.strip().strip("[]")
    address: IPAddress | None
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
        if _INET_ATON.match(bare):
            try:
                address = ipaddress.IPv4Address(socket.inet_aton(bare))
            except OSError:
                raise EgressRefused(f"{host!r} is not a valid IP address") from None
    return canonical(address) if address is not None else None


def canonical(address: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped IPv6 one; others as they are."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allowed(address: IPAddress | str, networks: Networks) -> bool:
    """True when `address` (canonicalised first) lies in one of `networks`."""
    try:
        ip = canonical(ipaddress.ip_address(address) if isinstance(address, str) else address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def _refuse(message: str, field: str) -> InputError:
    return InputError(f"{field}: {message}", code="forbidden_url", field=field)


async def check_url(url: str, networks: Networks, field: str) -> str:
    """`url` if the gateway may call it, with an IP host in its canonical spelling; else a 400.

    A name is resolved now and every address it resolves to must be allowed (the connection
    checks again, see `guarded_session`).
    """
    if not networks:
        raise _refuse(f"callbacks are disabled: {SETTING} is empty", field)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise _refuse("user information (user@host) is not allowed in the URL", field)
    host = parts.hostname or ""
    try:
        address = host_address(host)
    except EgressRefused as exc:
        raise _refuse(str(exc), field) from None
    if address is None:
        addresses = await _resolve(host, parts.port, field)
    else:
        addresses = [address]
        spelled = f"[{address}]" if address.version == 6 else str(address)
        netloc = spelled if parts.port is None else f"{spelled}:{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    for found in addresses:
        if not allowed(found, networks):
            raise _refuse(f"{host} ({found}) is outside {SETTING}", field)
    return url


async def _resolve(host: str, port: int | None, field: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError):
        raise _refuse(f"{host} does not resolve", field) from None
    addresses = {canonical(ipaddress.ip_address(info[4][0])) for info in infos}
    if not addresses:
        raise _refuse(f"{host} does not resolve", field)
    return sorted(addresses, key=lambda a: (a.version, int(a)))


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, keeping only addresses in the networks."""

    def __init__(self, networks: Networks) -> None:
        self._networks = networks
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [entry for entry in found if allowed(entry["host"], self._networks)]
        if not kept:
            raise OSError(errno.EACCES, f"{host} resolves outside {SETTING}")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket(networks: Networks) -> SocketFactoryType:
    """An aiohttp `socket_factory` that refuses to connect outside `networks`.

    It sees the very address the connection goes to, whatever resolved it (or an IP literal,
    which aiohttp does not resolve): the last line of defence.
    """

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        if not allowed(str(sockaddr[0]), networks):
            raise OSError(errno.EACCES, f"{sockaddr[0]} is outside {SETTING}")
        return socket.socket(family, kind, proto)

    return factory


def guarded_session(networks: Networks) -> aiohttp.ClientSession:
    """A client session that reaches only `networks` (no proxies from the environment)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(networks), socket_factory=guarded_socket(networks)
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


async def check_callbacks(commands: Iterable[Command], networks: Networks) -> None:
    """Check (and canonicalise) the `callback_url` of every question in `commands`: 400 if
    one may not be called."""
    checked: dict[str, str] = {}
    for command in commands:
        spec = command.meta.get("expect_reply")
        if not isinstance(spec, dict) or not spec.get("callback_url"):
            continue
        url = spec["callback_url"]
        if url not in checked:
            checked[url] = await check_url(url, networks, "expect_reply.callback_url")
        spec["callback_url"] = checked[url]
