"""Authentication of REST API calls: bearer tokens, optional request signatures, rate limits.

Every request to a protected route (`/enqueue_command`, `/commands/...`, `/metrics`) must carry
`Authorization: Bearer <token>` of a configured client. A client with a signing secret must
also sign each request:

    X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

accepted within five minutes of the gateway's clock, each signature once (the signatures seen
are kept in the queue database, so a restart does not open a replay window). A client with a rate
limit gets 429 with `Retry-After` beyond it. The checks run in that order, so an anonymous caller
learns nothing but "401".
"""

from __future__ import annotations

import math

from aiohttp import web

from gateway import constants as c
from gateway import keys
from gateway.clients import ApiClient
from gateway.errors import InputError
from gateway.guards import SIGNATURE_HEADER
from gateway.http import Handler

CLIENT = web.RequestKey("client", ApiClient)
PROTECTED_PREFIXES = (c.ENQUEUE_PATH, c.COMMANDS_PATH, c.METRICS_PATH)


def unauthorized(message: str) -> InputError:
    """A 401 that tells the client which scheme to use."""
    return InputError(
        message,
        code="unauthorized",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="telegram-gateway"'},
    )


_PROTECTED_EXACT = frozenset(PROTECTED_PREFIXES)
_PROTECTED_UNDER = tuple(p + "/" for p in PROTECTED_PREFIXES)


def is_protected(path: str) -> bool:
    """True for the routes that need an API client's credential (on every request: cheap)."""
    return path in _PROTECTED_EXACT or path.startswith(_PROTECTED_UNDER)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let protected routes through only with a valid (and, if required, signed) credential."""
    if not is_protected(request.path):
        return await handler(request)
    app = request.app
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("an API token is required: Authorization: Bearer <token>")
    client = app[keys.CLIENTS].authenticate(token.strip())
    if client is None:
        raise unauthorized("invalid or revoked API token")
    if client.signing_secret is not None:
        body = await request.read()
        problem = await app[keys.SIGNATURES].verify(
            client.name,
            client.signing_secret.reveal(),
            body,
            request.headers.get(SIGNATURE_HEADER),
        )
        if problem:
            raise unauthorized(problem)
    if client.rate_per_second is not None:
        wait = await app[keys.RATE_LIMITER].take(client.name, client.rate_per_second)
        if wait > 0:
            raise InputError(
                f"client {client.name!r} is over its rate limit of {client.rate_per_second:g}/s",
                code="rate_limited",
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    request[CLIENT] = client
    return await handler(request)
