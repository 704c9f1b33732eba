"""Request guards that keep state: signature verification (with replay memory) and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

SIGNATURE_HEADER = "X-Gateway-Signature"
SIGNATURE_WINDOW_SECONDS = 300
#: Signatures remembered for replay detection (the window's worth, bounded).
MAX_REMEMBERED_SIGNATURES = 100_000


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Gateway-Signature` value for `body` at `timestamp` (clients do the same)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


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
    """Checks signatures: fresh, correct (constant time), and never seen before."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, secret: str, body: bytes, header: str | None) -> str | None:
        """None when the signature is good (and now used up), else what is wrong with it."""
        now = self._clock()
        problem = check_signature(secret, body, header, now)
        if problem:
            return problem
        assert header is not None
        fields = _fields(header)
        presented = fields["v1"]
        self._forget(now)
        if presented in self._seen:
            return "signature already used (replay)"
        self._seen[presented] = int(fields["t"]) + SIGNATURE_WINDOW_SECONDS
        while len(self._seen) > MAX_REMEMBERED_SIGNATURES:
            self._seen.popitem(last=False)
        return None

    def _forget(self, now: float) -> None:
        while self._seen:
            signature, expires = next(iter(self._seen.items()))
            if expires >= now:
                break
            del self._seen[signature]


class RateLimiter:
    """A token bucket per client: `rate` per second, bursts of up to max(1, rate)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

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
