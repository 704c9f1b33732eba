"""Request guards that keep state: signature verification (with replay memory) and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Protocol

from gateway.queue.base import Queue

SIGNATURE_HEADER = "X-Gateway-Signature"
SIGNATURE_WINDOW_SECONDS = 300
#: What a client's callback key is derived from (with the client's name).
CALLBACK_KEY_LABEL = b"telegram-gateway callback key\x00"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Gateway-Signature` value for `body` at `timestamp` (clients do the same)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def callback_key(callback_secret: str, client: str | None) -> str:
    """The key that signs the callbacks of API client `client`: HMAC-SHA256 of its name under
    the gateway's callback secret, so each client can check its callbacks without being able to
    forge another's. None (a callback queued before per-client keys) → the secret itself."""
    if client is None:
        return callback_secret
    mac = hmac.new(callback_secret.encode(), CALLBACK_KEY_LABEL + client.encode(), hashlib.sha256)
    return mac.hexdigest()


def check_signature(secret: str, body: bytes, header: str | None, now: float) -> str | None:
    """None when `header` signs `body` with `secret` within the window, else what is wrong.

    Stateless: what a receiving service checks. `SignatureVerifier` adds replay refusal.
    """
    if not header:
        return f"this client must sign its requests ({SIGNATURE_HEADER})"
    fields = _fields(header)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return f"malformed {SIGNATURE_HEADER}: t=<unix seconds> missing"
    if abs(now - timestamp) > SIGNATURE_WINDOW_SECONDS:
        return "signature expired or from the future (allowed skew: 5 minutes)"
    expected = sign(secret, body, timestamp).partition("v1=")[2]
    if not hmac.compare_digest(fields.get("v1", "").encode(), expected.encode()):
        return "signature does not match the body"
    return None


def _fields(header: str) -> dict[str, str]:
    return dict(part.strip().partition("=")[::2] for part in header.split(","))


class SignatureVerifier:
    """Checks signatures: fresh, correct (constant time), and never seen before.

    The signatures seen are kept in the queue's storage, per client, until they expire (the
    signature window): a captured request cannot be replayed after a restart either, and one
    busy client cannot push another's signatures out of a bounded memory.
    """

    def __init__(self, queue: Queue, clock: Callable[[], float] = time.time) -> None:
        self._queue = queue
        self._clock = clock

    async def verify(self, client: str, secret: str, body: bytes, header: str | None) -> str | None:
        """None when the signature is good (and now used up), else what is wrong with it."""
        now = self._clock()
        problem = check_signature(secret, body, header, now)
        if problem:
            return problem
        assert header is not None
        fields = _fields(header)
        expires = int(fields["t"]) + SIGNATURE_WINDOW_SECONDS
        if not await self._queue.remember_signature(client, fields["v1"], expires, now):
            return "signature already used (replay)"
        return None


class SharedRate(Protocol):
    """A rate-limit store shared by replicas (gateway.queue.postgres.PostgresQueue)."""

    async def take_token(self, client: str, rate: float, now: float) -> float: ...


class RateLimiter:
    """A token bucket per client: `rate` per second, bursts of up to max(1, rate)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, shared: SharedRate | None = None
    ) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._shared = shared

    async def take(self, name: str, rate: float) -> float:
        """As `acquire`, in the shared store when there is one (every replica's requests
        count against one limit), else in this process."""
        if self._shared is not None:
            return await self._shared.take_token(name, rate, time.time())
        return self.acquire(name, rate)

    def acquire(self, name: str, rate: float) -> float:
        """0 when allowed (a token is taken), else seconds until one is available."""
        now = self._clock()
        capacity = max(1.0, rate)
        tokens, last = self._buckets.get(name, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[name] = (tokens - 1, now)
            return 0.0
        self._buckets[name] = (tokens, now)
        return (1 - tokens) / rate
