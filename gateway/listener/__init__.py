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

from gateway.listener.handler import GuardedHandler, connection_guard
from gateway.listener.limits import (
    ConnectionLimits,
    Throttle,
    connection_limits,
    open_file_limit,
    raise_open_file_limit,
)
from gateway.listener.site import BoundedSite

__all__ = [
    "BoundedSite",
    "ConnectionLimits",
    "GuardedHandler",
    "Throttle",
    "connection_guard",
    "connection_limits",
    "open_file_limit",
    "raise_open_file_limit",
]
