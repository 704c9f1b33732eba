"""The Bot API over HTTP: `/bot{token}/{method}` (GET or POST) and `/file/bot{token}/{path}`.

As on api.telegram.org: a malformed token is 404 `Not Found`, a well-formed one whose bot id
another token owns is 401 `Unauthorized`, a name that is no Bot API method is 404
`Not Found: method not found` (the wording of Telegram's server). A Bot API method the
sandbox does not emulate is 400 `Bad Request: method X is not emulated by the sandbox`, so no
client mistakes it for a bad token (python-telegram-bot reports every 404 as `InvalidToken`).
Armed faults (see `gateway.sandbox.faults`) are applied before the call runs. Unexpected
exceptions become 500 `Internal Server Error` and a log line without the token.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.sandbox import media, messages, methods, topics, webhook
from gateway.sandbox.calls import Call, Handler
from gateway.sandbox.catalogue import BOT_API_METHODS
from gateway.sandbox.keys import SANDBOX_STATE
from gateway.sandbox.params import Params
from gateway.sandbox.replies import ApiError, ok_response, status_error
from gateway.sandbox.state import TOKEN_PATTERN, BotState, SandboxState

logger = logging.getLogger(__name__)

#: Every emulated method: lower-case name → (Telegram's spelling, handler).
METHODS: dict[str, tuple[str, Handler]] = {
    **methods.METHODS.handlers,
    **messages.METHODS.handlers,
    **webhook.METHODS.handlers,
    **media.METHODS.handlers,
    **topics.METHODS.handlers,
}
METHOD_NOT_FOUND = "Not Found: method not found"


def _unknown_method(method: str) -> ApiError:
    if method.lower() in BOT_API_METHODS:
        return ApiError(400, f"Bad Request: method {method} is not emulated by the sandbox")
    return ApiError(404, METHOD_NOT_FOUND)


def _authenticate(sandbox: SandboxState, token: str) -> BotState | ApiError:
    if TOKEN_PATTERN.match(token) is None:
        return status_error(404)
    bot = sandbox.authenticate(token)
    return status_error(401) if bot is None else bot


async def run_method(
    sandbox: SandboxState, bot: BotState, method: str, params: Params
) -> web.Response:
    """Run one call and build its answer; faults, statistics and errors included."""
    entry = METHODS.get(method.lower())
    if entry is None:
        return _unknown_method(method).response()
    name, handler = entry
    sandbox.stats.record_call(name)
    try:
        result = await handler(Call(sandbox, bot, method.lower(), params))
        response = ok_response(result)
    except ApiError as exc:
        response = exc.response()
    except Exception:
        logger.exception("sandbox: %s crashed for bot %s", name, bot.bot_id)
        response = status_error(500).response()
    sandbox.stats.record_status(response.status)
    return response


async def handle_method(request: web.Request) -> web.StreamResponse:
    """`/bot{token}/{method}`."""
    sandbox = request.app[SANDBOX_STATE]
    bot = _authenticate(sandbox, request.match_info["token"])
    if isinstance(bot, ApiError):
        return bot.response()
    method = request.match_info["method"]
    entry = METHODS.get(method.lower())
    if entry is not None and (fault := sandbox.faults.take(method.lower(), bot.bot_id)):
        sandbox.stats.record_call(entry[0])
        sandbox.stats.fault_answers += 1
        error = fault.error()
        if error is None:
            logger.info("sandbox: dropping a %s call of bot %s (fault)", entry[0], bot.bot_id)
            if request.transport is not None:
                request.transport.abort()
            # Nothing reaches the client: aiohttp's write to the aborted transport fails quietly.
            return web.Response(status=499)
        sandbox.stats.record_status(error.error_code)
        return error.response()
    try:
        params = await Params.from_request(request)
    except ApiError as exc:
        return exc.response()
    return await run_method(sandbox, bot, method, params)


async def handle_file(request: web.Request) -> web.StreamResponse:
    """`/file/bot{token}/{path}`: a file getFile gave a path to (404 otherwise)."""
    sandbox = request.app[SANDBOX_STATE]
    bot = _authenticate(sandbox, request.match_info["token"])
    if isinstance(bot, ApiError):
        return bot.response()
    stored = sandbox.files.by_path(bot.bot_id, request.match_info["path"])
    if stored is None:
        return status_error(404).response()
    return web.Response(
        body=stored.data, content_type=stored.mime_type or "application/octet-stream"
    )


async def answer_from_webhook(
    sandbox: SandboxState, bot: BotState, payload: dict[str, Any]
) -> None:
    """Execute the method call a webhook answered with; its outcome goes nowhere."""
    method = str(payload["method"])
    values = {key: value for key, value in payload.items() if key != "method"}
    response = await run_method(sandbox, bot, method, Params(values))
    logger.info("bot %s: webhook answer %s → %s", bot.bot_id, method, response.status)


def add_routes(app: web.Application) -> None:
    """Register the Bot API routes."""
    app.router.add_route("*", "/bot{token}/{method}", handle_method)
    app.router.add_route("*", "/file/bot{token}/{path:.+}", handle_file)
