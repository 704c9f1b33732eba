"""The Telegram webhook route: authenticate the push, parse the Update, hand it to the bot.

Telegram retries an update for hours until it gets a 2xx, so once the request is authentic and
well-formed it is always acknowledged, even when a handler fails (the failure is logged).
"""

from __future__ import annotations

import hmac
import json
import logging

from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from gateway import constants as c
from gateway import keys
from gateway.http import error_response

logger = logging.getLogger(__name__)


async def handle_update(request: web.Request) -> web.Response:
    """`POST {webhook_path}`: one Update from Telegram."""
    app = request.app
    config = app[keys.CONFIG]
    presented = request.headers.get(c.SECRET_TOKEN_HEADER, "").encode()
    expected = config.secret_token.reveal().encode()
    if not hmac.compare_digest(presented, expected):
        logger.warning("webhook call from %s refused: wrong or missing secret", request.remote)
        return error_response(401, "unauthorized", "wrong or missing secret token")
    body = await request.read()
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        update = Update.model_validate(data, context={"bot": app[keys.BOT]})
    except (ValueError, RecursionError, ValidationError):
        return error_response(400, "invalid_update", "the body is not a JSON Update")
    app[keys.METRICS].updates.labels(update.event_type).inc()
    try:
        await app[keys.DISPATCHER].feed_update(app[keys.BOT], update)
    except Exception:
        logger.exception("handling update %d failed; acknowledged anyway", update.update_id)
    return web.json_response({"ok": True})


def add_routes(app: web.Application, path: str) -> None:
    """Mount the webhook at `path`."""
    app.router.add_post(path, handle_update)
