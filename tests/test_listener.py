"""The listener under abusive clients: slowloris, idle TLS, connection floods, malformed HTTP.

Every case runs against a live gateway over real TLS sockets on loopback, with short deadlines
set through configuration; waits are bounded, and times are asserted only as upper bounds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from gateway import constants as c
from gateway import keys
from gateway.certs import client_ssl_context
from gateway.config import ServerSettings
from gateway.listener import (
    BoundedSite,
    ConnectionLimits,
    Throttle,
    connection_guard,
    connection_limits,
    open_file_limit,
)
from tests.conftest import Gateway, GatewayFactory, free_loopback_address

PORT = 8443
#: Short enough to keep the tests quick, long enough for a well-behaved client on a busy machine.
SHORT = {
    "GATEWAY_SERVER_HANDSHAKE_TIMEOUT": "4",
    "GATEWAY_SERVER_HEAD_TIMEOUT": "2",
    "GATEWAY_SERVER_BODY_TIMEOUT": "2",
    "GATEWAY_SERVER_IDLE_TIMEOUT": "2.5",
}
#: Upper bound for "closed after its deadline": the deadline (2-4 s) plus a loaded machine.
CLOSED_WITHIN = 15.0


def tls(gw: Gateway) -> ssl.SSLContext:
    return client_ssl_context(gw.config.certificate_path.read_bytes())


def host(gw: Gateway) -> str:
    return gw.config.server.host


def closed_early(gw: Gateway, reason: str) -> float:
    """`gateway_connections_closed_early_total{reason}` as /metrics has it."""
    registry = gw.app[keys.METRICS].registry
    name = "gateway_connections_closed_early_total"
    return registry.get_sample_value(name, {"reason": reason}) or 0.0


@asynccontextmanager
async def short_deadlines(factory: GatewayFactory, **env: str) -> AsyncIterator[Gateway]:
    async with factory({**SHORT, **env}) as gw:
        yield gw


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded by `limit`)."""
    data = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                return data
            if not chunk:
                return data
            data += chunk


async def served(gw: Gateway) -> bool:
    async with gw.http.get(f"{gw.url}/healthz") as resp:
        return resp.status == 200


async def slowloris(gw: Gateway, byte_every: float) -> tuple[float, bytes]:
    """Open a TLS connection, start a request head and add one byte per `byte_every` seconds
    until the server closes; return (seconds open, what the server sent)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection(host(gw), PORT, ssl=tls(gw))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
    received = b""
    try:
        for _ in range(int(CLOSED_WITHIN / byte_every) + 1):
            try:
                chunk = await asyncio.wait_for(reader.read(4096), byte_every)
            except TimeoutError:
                writer.write(b"a")
                continue
            except (ConnectionError, ssl.SSLError):
                break
            if not chunk:
                break
            received += chunk
        else:
            raise AssertionError(f"still open after {CLOSED_WITHIN} s")
        return loop.time() - started, received
    finally:
        writer.close()


async def test_slowloris_connections_are_closed_after_the_head_deadline(
    gateway_factory: GatewayFactory,
) -> None:
    async with short_deadlines(gateway_factory) as gw:
        lasted = await asyncio.gather(*(slowloris(gw, byte_every=0.25) for _ in range(60)))
        assert await served(gw)
        assert closed_early(gw, "head_timeout") == 60
    for seconds, answer in lasted:
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert seconds < CLOSED_WITHIN


async def test_idle_tls_connections_are_closed(gateway_factory: GatewayFactory) -> None:
    async with short_deadlines(gateway_factory) as gw:
        # TCP only: never a ClientHello.
        raw = [await asyncio.open_connection(host(gw), PORT) for _ in range(30)]
        # A finished handshake, then silence.
        shaken = [await asyncio.open_connection(host(gw), PORT, ssl=tls(gw)) for _ in range(30)]
        no_hello = await asyncio.gather(*(read_until_closed(r, CLOSED_WITHIN) for r, _ in raw))
        silent = await asyncio.gather(*(read_until_closed(r, CLOSED_WITHIN) for r, _ in shaken))
        for _, writer in raw + shaken:
            writer.close()
        assert no_hello == [b""] * 30  # nothing to say before a handshake: just closed
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in silent), silent[:1]
        assert await served(gw)
        assert closed_early(gw, "handshake") == 30
        assert closed_early(gw, "head_timeout") == 30


async def test_a_body_that_never_completes_gets_408(gateway_factory: GatewayFactory) -> None:
    async with short_deadlines(gateway_factory) as gw:
        reader, writer = await asyncio.open_connection(host(gw), PORT, ssl=tls(gw))
        writer.write(
            b"POST /enqueue_command HTTP/1.1\r\nHost: gateway\r\n"
            + f"Authorization: Bearer {gw.token}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"text": '
        )
        answer = await read_until_closed(reader, CLOSED_WITHIN)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert await served(gw)
        assert closed_early(gw, "body_timeout") == 1


async def test_idle_keep_alive_connection_is_closed(gateway_factory: GatewayFactory) -> None:
    async with short_deadlines(gateway_factory) as gw:
        reader, writer = await asyncio.open_connection(host(gw), PORT, ssl=tls(gw))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        answer = await read_until_closed(reader, CLOSED_WITHIN)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.count(b"HTTP/1.1") == 1  # the 200, then closed for idleness (no 408)


async def test_keep_alive_requests_each_get_their_own_head_deadline(
    gateway_factory: GatewayFactory,
) -> None:
    """A well-behaved client reusing its connection is not cut by the head deadline: that
    runs from the connection's start for its first request, from the first byte for later ones."""
    async with short_deadlines(gateway_factory, GATEWAY_SERVER_IDLE_TIMEOUT="30") as gw:
        reader, writer = await asyncio.open_connection(host(gw), PORT, ssl=tls(gw))
        for pause in (0, 2.5, 2.5):  # between requests: longer than the head deadline
            await asyncio.sleep(pause)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSED_WITHIN)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()


async def test_connections_beyond_the_cap_are_refused_at_once(
    gateway_factory: GatewayFactory,
) -> None:
    env = {"GATEWAY_SERVER_MAX_CONNECTIONS": "20", "GATEWAY_SERVER_HANDSHAKE_TIMEOUT": "30"}
    async with gateway_factory(env) as gw:
        held = [await asyncio.open_connection(host(gw), PORT) for _ in range(20)]
        # Accepted in order after the 20 (which wait 30 s for a handshake): closed at once.
        reader, writer = await asyncio.open_connection(host(gw), PORT)
        assert await read_until_closed(reader, 10.0) == b""
        writer.close()
        with pytest.raises(OSError):  # a client finds the door closed, cleanly
            await served(gw)
        assert closed_early(gw, "over_limit") == 2
        registry = gw.app[keys.METRICS].registry
        assert registry.get_sample_value("gateway_connections_open") == 20
        assert registry.get_sample_value("gateway_connections_max") == 20
        for _, held_writer in held:
            held_writer.close()
        for _ in range(100):  # the slots free as the gateway sees them close
            try:
                if await served(gw):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("not served after the held connections closed")


MALFORMED = {
    "10 KB header": (
        b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Big: " + b"a" * 10_240 + b"\r\n\r\n",
        431,
    ),
    "200 headers": (
        b"GET /healthz HTTP/1.1\r\nHost: g\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
    "NUL in a header": (b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Nul: a\x00b\r\n\r\n", 400),
    "CL and TE": (
        b"POST /enqueue_command HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two lengths": (
        b"POST /enqueue_command HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
        400,
    ),
    "bad chunk size": (
        b"POST /enqueue_command HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "TE obfuscated": (
        b"POST /enqueue_command HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding : identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bare LF in request line": (b"GET /healthz HTTP/1.1\nHost: g\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_http_gets_its_4xx_without_an_error_line(
    gateway: Gateway, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    request, status = MALFORMED[name]
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection(host(gateway), PORT, ssl=tls(gateway))
    writer.write(request)
    answer = await read_until_closed(reader, CLOSED_WITHIN)
    writer.close()
    assert answer.split(b" ", 2)[1] == b"%d" % status, answer[:200]
    assert b'"error"' in answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert len([r for r in caplog.records if r.levelno >= logging.INFO]) <= 1
    assert closed_early(gateway, "malformed") == 1
    assert await served(gateway)


def test_throttle_admits_one_event_per_interval() -> None:
    throttle = Throttle(interval=3600)
    assert throttle.admit() == 0
    assert [throttle.admit() for _ in range(5)] == [None] * 5
    throttle._next = 0.0  # the interval has passed
    assert throttle.admit() == 5


def test_the_cap_is_derived_from_the_open_file_limit() -> None:
    derived = connection_limits(ServerSettings())
    expected = min(open_file_limit() - c.FD_RESERVE, c.MAX_CONNECTIONS_CEILING)
    assert derived.max_connections == max(expected, c.MIN_CONNECTIONS)
    assert connection_limits(ServerSettings(max_connections=7)).max_connections == 16
    assert connection_limits(ServerSettings(max_connections=300)).max_connections == 300


async def test_a_client_leaving_mid_body_is_not_an_error(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection(host(gateway), PORT, ssl=tls(gateway))
    writer.write(
        b"POST /enqueue_command HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {gateway.token}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"text": '
    )
    await writer.drain()
    await asyncio.sleep(0.3)  # the request is being handled, waiting for its body
    writer.transport.abort()
    assert await served(gateway)
    await asyncio.sleep(0.5)  # the gateway has long seen the connection go
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_plain_http_site_refuses_with_503_and_times_out_heads() -> None:
    """Without TLS (a reverse proxy in front) the same bounds hold; refusal is a bare 503."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[connection_guard])
    app.router.add_get("/", hello)
    limits = ConnectionLimits(
        handshake_timeout=4, head_timeout=2, body_timeout=2, idle_timeout=2.5, max_connections=2
    )
    runner = web.AppRunner(app, keepalive_timeout=limits.idle_timeout)
    await runner.setup()
    address = free_loopback_address()
    site = BoundedSite(runner, address, PORT, limits=limits)
    await site.start()
    try:
        slow_reader, slow_writer = await asyncio.open_connection(address, PORT)
        slow_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        ok_reader, ok_writer = await asyncio.open_connection(address, PORT)
        ok_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await read_until_closed(ok_reader, CLOSED_WITHIN)).endswith(b"hello")
        ok_writer.close()
        # The slow one holds a slot; hold the other one too, then knock once more.
        held_reader, held_writer = await asyncio.open_connection(address, PORT)
        for _ in range(100):
            if site.open_connections == 2:
                break
            await asyncio.sleep(0.05)
        extra_reader, extra_writer = await asyncio.open_connection(address, PORT)
        refused = await read_until_closed(extra_reader, CLOSED_WITHIN)
        assert refused.startswith(b"HTTP/1.1 503"), refused
        extra_writer.close()
        timed_out = await read_until_closed(slow_reader, CLOSED_WITHIN)
        assert timed_out.startswith(b"HTTP/1.1 408"), timed_out
        assert (await read_until_closed(held_reader, CLOSED_WITHIN)).startswith(b"HTTP/1.1 408")
        slow_writer.close()
        held_writer.close()
    finally:
        await runner.cleanup()
