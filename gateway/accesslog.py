"""The access log, kept off the request's hot path as far as a log line can be.

aiohttp's `AccessLogger` interprets its format string for every request, formats the time
with `strftime` each time, builds an `extra` dict nobody here reads, and lets `Logger.info`
walk the stack for the caller. At `--log-level info` (the default) that cost as much as the
rest of an authenticated enqueue (bench/README.md). This logger writes the same line —
aiohttp's default format, `%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"`, with the real
client's address behind trusted proxies — from a fixed template, stamps the time once a
second, and hands the finished record to the logger's handlers (filters, redaction and the
JSON format still apply).
"""

from __future__ import annotations

import datetime as dt
import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from gateway.proxy import client_address


class ClientAccessLogger(AbstractAccessLogger):
    """`remote [time] "METHOD path HTTP/x.y" status bytes "referer" "user agent"`."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)  # the format is fixed: see the module's docstring
        self._second = -1
        self._stamp = ""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        try:
            record = logging.LogRecord(
                self.logger.name, logging.INFO, __file__, 0, "", None, None, "log"
            )
            headers = request.headers
            version = request.version
            record.msg = (
                f"{client_address(request) or '-'} {self._time(record.created - time)} "
                f'"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}" '
                f"{response.status} {response.body_length} "
                f'"{headers.get("Referer", "-")}" "{headers.get("User-Agent", "-")}"'
            )
            self.logger.handle(record)
        except Exception:  # as aiohttp's: a log line must never fail a request
            self.logger.exception("Error in logging")

    def _time(self, started: float) -> str:
        """`[30/Nov/2026:02:54:47 +0000]` in local time, as aiohttp writes it."""
        second = int(started)
        if second != self._second:
            local = dt.datetime.fromtimestamp(second).astimezone()
            self._second, self._stamp = second, local.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        return self._stamp
