"""The gateway's exceptions: one root, and a few that carry a decision."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose.

    Its message is meant for the person running the gateway: one line, naming the file or key
    at fault, never a secret.
    """


class ConfigError(GatewayError):
    """The configuration (a file, a key, an environment variable) is wrong."""


class CertificateError(ConfigError):
    """A certificate or private key is missing, unreadable, mismatched or expired."""


class StartupError(GatewayError):
    """The gateway could not start (Telegram refused the token or the webhook, a port is busy)."""


class StorageError(GatewayError):
    """The queue's storage failed (disk full, read-only, locked, vanished, I/O error).

    The REST API answers 503 `storage_unavailable` with Retry-After; the worker holds what it
    could not save and tries again. `reason` is short and safe to show to anyone (no path).
    """

    def __init__(self, message: str, reason: str = "storage error") -> None:
        super().__init__(message)
        self.reason = reason


class QueueSyncError(StorageError):
    """A committed queue write could not be synced to disk; the REST API answers 503.

    `result` is what the write answered: it is committed, so a caller that does not need it
    durable (taking a command to send it) may go on with it.
    """

    def __init__(
        self, message: str, reason: str = "the disk did not confirm a write", result: Any = None
    ) -> None:
        super().__init__(message, reason)
        self.result = result


class InputError(GatewayError):
    """A client sent something the REST API cannot accept; becomes a 4xx JSON error."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_input",
        field: str | None = None,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status
        self.headers = headers or {}
