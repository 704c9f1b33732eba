"""Accepting connections: one slot each from accept to close, TLS under its deadline."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway import constants as c
from gateway.listener.handler import GuardedHandler
from gateway.listener.limits import ConnectionLimits, Throttle, since

logger = logging.getLogger(__name__)

_SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: 0\r\n\r\n"
)
_ACCEPT_ERROR = "socket.accept() out of system resource"


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
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=limits.backlog)
        self._host, self._port = host, port
        self.limits = limits
        self.tls = ssl_context
        #: Client connections open now (handshaking ones included).
        self.open_connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals = Throttle()
        self._accept_errors = Throttle()
        self._malformed_log = Throttle()
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
            malformed_log=self._malformed_log,
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
                since(held, "refused"),
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
                since(held, "such errors"),
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
