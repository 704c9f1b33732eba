"""The control API's plumbing: JSON in and out, clear 4xx errors, choosing the bot.

Every control route answers JSON; a mistake in the request is a 4xx `{"error": "..."}`, never
a 500. Routes acting on one bot take `bot_id` (the digits of its token) from the JSON body or
the query string; without it, the only known bot is meant, and with several known bots the
request is refused. Tokens are never part of any answer.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.sandbox.keys import SANDBOX_STATE
from gateway.sandbox.replies import json_response
from gateway.sandbox.state import BotState, SandboxState

logger = logging.getLogger(__name__)

ControlHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(Exception):
    """A refused control request: HTTP `status` with `{"error": message, **extra}`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def control(handler: ControlHandler) -> ControlHandler:
    """Turn `ControlError` (and any unexpected crash) into a JSON answer."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as exc:
            return json_response({"error": exc.message, **exc.extra}, status=exc.status)
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("sandbox control route %s crashed", request.path)
            return json_response({"error": "internal error, see the sandbox log"}, status=500)

    return wrapper


def sandbox_of(request: web.Request) -> SandboxState:
    """The sandbox state behind a request."""
    return request.app[SANDBOX_STATE]


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty)."""
    raw = await request.text()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ControlError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def integer(value: Any, name: str, *, positive: bool = False) -> int:
    """An integer field (JSON number or decimal string)."""
    if isinstance(value, bool):
        raise ControlError(400, f"'{name}' must be an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ControlError(400, f"'{name}' must be an integer") from None
    if not isinstance(value, int):
        raise ControlError(400, f"'{name}' must be an integer")
    if positive and value <= 0:
        raise ControlError(400, f"'{name}' must be a positive integer")
    return value


def optional_text(body: dict[str, Any], name: str) -> str | None:
    """An optional non-empty string field."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ControlError(400, f"'{name}' must be a non-empty string")
    return value


def path_int(request: web.Request, name: str) -> int:
    """An integer from the route path."""
    return integer(request.match_info[name], name)


def choose_bot(
    request: web.Request, body: dict[str, Any] | None = None, *, create: bool = False
) -> BotState:
    """The bot a request means: `bot_id` given, or the only known one.

    With `create`, a `bot_id` the sandbox has not seen yet is created (users may write to a
    bot before it first runs); otherwise an unknown `bot_id` is a 404.
    """
    sandbox = sandbox_of(request)
    raw = (body or {}).get("bot_id", request.query.get("bot_id"))
    if raw is not None:
        bot_id = integer(raw, "bot_id", positive=True)
        if not create and bot_id not in sandbox.bots:
            raise ControlError(404, f"bot {bot_id} is not known")
        return sandbox.bot(bot_id)
    if len(sandbox.bots) == 1:
        return next(iter(sandbox.bots.values()))
    if not sandbox.bots:
        raise ControlError(
            400, "no bot is known yet: pass 'bot_id' (the digits before ':' in its token)"
        )
    known = ", ".join(str(bot_id) for bot_id in sorted(sandbox.bots))
    raise ControlError(400, f"several bots are known ({known}): pass 'bot_id'")


def known_bot(request: web.Request) -> BotState:
    """The bot named by `{bot_id}` in the path; 404 when the sandbox never saw it."""
    bot_id = integer(request.match_info["bot_id"], "bot_id", positive=True)
    bot = sandbox_of(request).bots.get(bot_id)
    if bot is None:
        raise ControlError(404, f"bot {bot_id} is not known")
    return bot
