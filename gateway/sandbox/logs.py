"""Logging without secrets: bot tokens travel in request paths (`/bot<token>/<method>`), and
a client may send setWebhook's `secret_token` in the query string.

`SandboxAccessLogger` is the access logger to hand to `web.AppRunner(access_log_class=...)`;
`TokenRedactingFilter` rewrites any record mentioning a token, and `create_sandbox_app`
installs it on aiohttp's loggers as a safety net for runners that use the default logger.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.redact import RedactingFilter
from gateway.redact import redact as redact_tokens

__all__ = ["SandboxAccessLogger", "TokenRedactingFilter", "install_redaction", "redact"]

#: A webhook secret in a query string (`?secret_token=...`, `&secret_token=...`), any case.
_QUERY_SECRET_RE = re.compile(r"(?i)([?&]secret(?:_|%5f)token=)[^&\s\"']*")


def redact(text: str) -> str:
    """Hide bot tokens and query-string webhook secrets."""
    return _QUERY_SECRET_RE.sub(r"\1***", redact_tokens(text))


#: aiohttp's loggers that may print a request path.
AIOHTTP_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web")


class SandboxAccessLogger(AbstractAccessLogger):
    """Access log lines with tokens redacted: `127.0.0.1 "POST /bot123:***/getMe" 200 ...`."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write one line per answered request."""
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            response.body_length,
            time,
        )


class TokenRedactingFilter(RedactingFilter):
    """The gateway's redacting filter plus query-string secrets, for aiohttp's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction() -> None:
    """Add one `TokenRedactingFilter` to each of aiohttp's loggers (idempotent)."""
    for name in AIOHTTP_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactingFilter) for f in target.filters):
            target.addFilter(TokenRedactingFilter())
