"""What every `gateway` command shares: exit statuses, the one-line error, log set-up."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

EXIT_USAGE = 2
EXIT_FAILURE = 1


def setup_logging(level: str, secrets: Sequence[str] = (), log_format: str = "text") -> None:
    """Log lines (plain or JSON) on stderr, with bot tokens and the given secrets scrubbed."""
    from gateway import redact
    from gateway.ops.logformat import make_formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    redact.install(secrets)


def fail(message: str, status: int = EXIT_USAGE) -> int:
    """Print a user mistake as one `error: ...` line on stderr; returns the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return status
