"""How many connections, how long each may take, and the open files that bound them."""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass

from gateway import constants as c
from gateway.config import ServerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one listener allows: its deadlines (seconds) and its number of connections."""

    handshake_timeout: float
    head_timeout: float
    body_timeout: float
    idle_timeout: float
    max_connections: int
    #: The listen backlog, which is also how many connections asyncio accepts in one burst
    #: before any of them is counted: it comes out of the reserve, so it is kept small when
    #: the open-file limit is.
    backlog: int = c.LISTEN_BACKLOG


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
        backlog=max(c.MIN_CONNECTIONS, min(c.LISTEN_BACKLOG, max(budget, 0) // 4)),
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


def since(held: int, what: str) -> str:
    """The tail of a throttled log line: what was held back since the last one."""
    return f" ({held} more {what} since the last such line)" if held else ""
