"""How long and how often a command is retried, and how the loop waits for the storage."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway import constants as c
from gateway import telegram
from gateway.commands import Command

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class RetryBudget:
    """How long a command keeps being retried after transient failures."""

    max_attempts: int = 8
    max_age: float = 3600.0

    def allows(self, command: Command, failure: telegram.Failure, now: float) -> bool:
        """Outages are budgeted by time (`max_age`); failures of the request itself by both
        time and `max_attempts`. An outage's attempts still count: one answer that proves the
        request was processed after a long outage may be its last."""
        if not failure.retryable:
            return False
        if now - command.created_at >= self.max_age:
            return False
        if failure.outage:
            return True
        attempts = int(command.meta.get("max_attempts", self.max_attempts))
        return command.attempts < attempts


def backoff(attempts: int) -> float:
    """The wait before retry number `attempts`: exponential with jitter, capped."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


def storage_backoff(last: float) -> float:
    """The next wait while the storage is down: doubling from 0.1 s up to a cap."""
    return min(c.STORAGE_BACKOFF_CAP_SECONDS, max(0.1, last * 2))
