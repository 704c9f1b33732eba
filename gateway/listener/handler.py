"""One connection's HTTP side: head and body deadlines, quiet 4xx for what the parser refuses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from gateway.http import Handler, error_response
from gateway.listener.limits import ConnectionLimits, Throttle, since

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


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
        malformed_log: Throttle | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kw)
        self.limits = limits
        self._closed = closed
        self._malformed_log = malformed_log or Throttle()
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
        held = self._malformed_log.admit()
        if held is not None:
            logger.info(
                "refused a malformed request from %s with %d: %s%s",
                request.remote,
                status,
                reason,
                since(held, "refused"),
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
