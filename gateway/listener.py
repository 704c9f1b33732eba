"""The listener: accepting connections within bounds of time, number and open files.

aiohttp and asyncio alone leave a connection open as long as its client likes: no deadline for
the TLS handshake that the gateway sees through, for a request's head or body, and no cap on
how many there are. Here every connection holds one slot of `max_connections` from accept to
close (handshake included), and runs under four deadlines:

- the TLS handshake (`handshake_timeout`);
- a request's head, from the connection's start or the first byte of the next request
  (`head_timeout`);
- its body, from the end of the head (`body_timeout`);
- idle keep-alive between requests (`idle_timeout`, aiohttp's `keepalive_timeout`).

A late client gets `408` and the connection closes; beyond the cap a connection is closed at
once (plain HTTP: a bare `503` first). The cap stays below the open-file limit by
`FD_RESERVE`, so calls to Telegram and the database never starve. Requests the HTTP parser
refuses get 431 (header lines too long, too many headers) or 400 and one throttled info line;
accept errors ("out of system resource") are logged once per interval, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway import constants as c
from gateway.config import ServerSettings
from gateway.http import Handler, error_response

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: 0\r\n\r\n"
)
_ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True)
class ConnectionLimits:
    """What one listener allows: its deadlines (seconds) and its number of connections."""

    handshake_timeout: float
    head_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int


def open_file_limit() -> int:
    """The process's soft RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (what the Go runtime does at start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. a hard limit the kernel caps lower
            logger.debug("could not raise the open-file limit from %d to %s", soft, hard)
    return open_file_limit()


def connection_limits(server: ServerSettings) -> ConnectionLimits:
    """The limits `[server]` asks for; `max_connections = 0` derives the cap from the
    open-file limit, keeping `FD_RESERVE` descriptors for everything that is not a client."""
    budget = open_file_limit() - c.FD_RESERVE
    cap = server.max_connections or min(budget, c.MAX_CONNECTIONS_CEILING)
    if cap < c.MIN_CONNECTIONS:
        logger.warning(
            "the open-file limit (%d) leaves room for only %d client connections after %d "
            "reserved; raise it (ulimit -n, systemd LimitNOFILE=) or set [server] max_connections",
            open_file_limit(),
            max(budget, 0),
            c.FD_RESERVE,
        )
        cap = max(cap, c.MIN_CONNECTIONS)
    elif cap > budget:
        logger.warning(
            "[server] max_connections = %d is above what the open-file limit (%d) allows with "
            "%d kept for calls to Telegram and the database: raise the limit (ulimit -n)",
            cap,
            open_file_limit(),
            c.FD_RESERVE,
        )
    return ConnectionLimits(
        handshake_timeout=server.handshake_timeout,
        head_timeout=server.head_timeout,
        body_timeout=server.body_timeout,
        idle_timeout=server.idle_timeout,
        max_connections=cap,
    )


class Throttle:
    """One event through per interval; counts the ones held back in between."""

    def __init__(self, interval: float = c.LOG_THROTTLE_SECONDS) -> None:
        self.interval = interval
        self._next = 0.0
        self._held = 0

    def admit(self) -> int | None:
        """None: stay quiet. Otherwise go ahead; the number of events held back since."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return None
        self._next = now + self.interval
        held, self._held = self._held, 0
        return held


_MALFORMED = Throttle()


def _since(held: int, what: str) -> str:
    return f" ({held} more {what} since the last such line)" if held else ""


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol with head and body deadlines, and quiet 4xx for
    requests its parser refuses."""

    def __init__(
        self,
        manager: Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: ConnectionLimits,
        closed: Callable[[str], None] = lambda reason: None,
        **kw: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kw)
        self.limits = limits
        self._closed = closed
        self._deadline: asyncio.TimerHandle | None = None
        self._busy = False
        self._refusal: web.StreamResponse | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self.limits.head_timeout, "head_timeout")

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self._busy:  # the first byte of the next request
            self._arm(self.limits.head_timeout, "head_timeout")
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self, request: BaseRequest) -> None:
        """The head is in: its deadline ends, the body's begins (unless it is all here)."""
        self._disarm()
        self._busy = True
        if not request.content.is_eof():
            self._arm(self.limits.body_timeout, "body_timeout", request)

    def request_finished(self) -> None:
        self._disarm()
        self._busy = False

    def _arm(self, delay: float, what: str, request: BaseRequest | None = None) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(delay, self._expire, what, request)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str, request: BaseRequest | None) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if request is not None and request.content.is_eof():
            return  # the body arrived just in time
        logger.debug("408 (%s) to %s", what, request_peer(transport))
        self._closed(what)
        transport.write(_REQUEST_TIMEOUT)
        transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # The parser refused the request: the client's mistake, not ours (no traceback).
        if isinstance(exc, LineTooLong):
            status, code, reason = 431, "headers_too_large", "a header line is too long"
        elif "too many headers" in exc.message.lower():
            status, code, reason = 431, "headers_too_large", "too many header fields"
        else:  # the first line only: later ones quote the client's bytes (maybe a token)
            code, reason = "malformed_request", exc.message.split("\n", 1)[0][:120]
        self._closed("malformed")
        held = _MALFORMED.admit()
        if held is not None:
            logger.info(
                "refused a malformed request from %s with %d: %s%s",
                request.remote,
                status,
                reason,
                _since(held, "refused"),
            )
        response = error_response(status, code, f"malformed HTTP request: {reason}")
        response.force_close()
        self._refusal = response
        return response

    def log_access(
        self, request: BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        if response is self._refusal:  # logged above, throttled: not a second line
            self._refusal = None
            return
        super().log_access(request, response, time)


def request_peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else "?"


@web.middleware
async def connection_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection its request's head is in (its body deadline starts), and end quietly
    when the connection is gone mid-request: nobody is left to answer, nothing to log."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedHandler):
        return await handler(request)
    protocol.request_started(request)
    try:
        return await handler(request)
    except ConnectionError:
        if protocol.transport is not None and not protocol.transport.is_closing():
            raise
        return web.Response(status=408)  # never sent: the connection is closed
    finally:
        protocol.request_finished()


class _Connection(asyncio.Protocol):
    """One accepted socket: holds a slot from accept to close, runs the TLS handshake under
    its deadline, then hands the stream to a `GuardedHandler`."""

    def __init__(self, site: BoundedSite) -> None:
        self._site = site
        self._handler: GuardedHandler | None = None
        self._early: list[bytes] = []
        self._holds_slot = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        site = self._site
        if not site.take_slot():
            site.refuse(transport)
            return
        self._holds_slot = True
        context = site.tls
        if context is None:
            self._attach(transport)
            return
        transport.pause_reading()  # start_tls must see the ClientHello, not us
        site.spawn(self._handshake(transport, context))

    async def _handshake(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._site.limits.handshake_timeout,
                ssl_shutdown_timeout=c.TLS_SHUTDOWN_TIMEOUT_SECONDS,
            )
        except asyncio.CancelledError:
            self._release()
            raw.abort()
            raise
        except Exception:  # handshake failed, timed out, or the peer left: nothing to report
            self._site.metrics.closed.labels("handshake").inc()
            self._release()
            raw.abort()
            return
        if tls is None or not self._holds_slot:
            raw.abort()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        self._handler = handler = self._site.make_handler()
        handler.connection_made(transport)
        early, self._early = self._early, []
        for chunk in early:
            handler.data_received(chunk)

    def _release(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self._site.release_slot()

    def data_received(self, data: bytes) -> None:
        if self._handler is None:  # decrypted right after the handshake, before _attach
            self._early.append(data)
        else:
            self._handler.data_received(data)

    def eof_received(self) -> None:
        if self._handler is not None:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._release()
        if self._handler is not None:
            self._handler.connection_lost(exc)


class BoundedSite(web.BaseSite):
    """A TCP site whose connections are counted, capped and timed (see the module's doc)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port = host, port
        self.limits = limits
        self.tls = ssl_context
        #: Client connections open now (handshaking ones included).
        self.open_connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals = Throttle()
        self._accept_errors = Throttle()
        self._previous_handler: Any = None
        self.metrics = ConnectionMetrics(registry or CollectorRegistry(), self)

    @property
    def name(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self._host, self._port, backlog=self._backlog
        )
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() == self._loop_exception:
            loop.set_exception_handler(self._previous_handler)
        for task in list(self._tasks):
            task.cancel()
        await super().stop()

    def make_handler(self) -> GuardedHandler:
        server = self._runner.server
        assert server is not None
        # What aiohttp's Server.__call__ does, with our class and limits.
        kwargs = {**server._kwargs, "keepalive_timeout": self.limits.idle_timeout}
        return GuardedHandler(
            server,
            loop=asyncio.get_running_loop(),
            limits=self.limits,
            closed=self.metrics.closed_early,
            **kwargs,
        )

    def take_slot(self) -> bool:
        if self.open_connections >= self.limits.max_connections:
            return False
        self.open_connections += 1
        return True

    def release_slot(self) -> None:
        self.open_connections -= 1

    def refuse(self, transport: asyncio.Transport) -> None:
        self.metrics.closed.labels("over_limit").inc()
        held = self._refusals.admit()
        if held is not None:
            logger.warning(
                "%d connections open, the most [server] max_connections allows: refusing new "
                "ones%s",
                self.open_connections,
                _since(held, "refused"),
            )
        if self.tls is None:
            transport.write(_SERVICE_UNAVAILABLE)
        transport.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_ERROR:
            if self._previous_handler is not None:
                self._previous_handler(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        held = self._accept_errors.admit()
        if held is not None:
            exc = context.get("exception")
            logger.warning(
                "cannot accept connections: %s (%d client connections open); retrying every "
                "second%s",
                getattr(exc, "strerror", None) or exc,
                self.open_connections,
                _since(held, "such errors"),
            )


class ConnectionMetrics:
    """The listener's Prometheus metrics, in the app's registry."""

    def __init__(self, registry: CollectorRegistry, site: BoundedSite) -> None:
        gauge = Gauge(
            "gateway_connections_open",
            "Client connections open, handshaking ones included",
            registry=registry,
        )
        gauge.set_function(lambda: site.open_connections)
        Gauge("gateway_connections_max", "The cap on client connections", registry=registry).set(
            site.limits.max_connections
        )
        self.closed = Counter(
            "gateway_connections_closed_early",
            "Client connections closed by the gateway: over_limit, handshake (failed or too "
            "slow), head_timeout, body_timeout, malformed (refused by the HTTP parser)",
            ["reason"],
            registry=registry,
        )

    def closed_early(self, reason: str) -> None:
        self.closed.labels(reason).inc()
