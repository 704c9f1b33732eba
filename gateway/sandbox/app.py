"""The sandbox app factory: Bot API routes, control routes and the webhook delivery engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.sandbox import conversation, filecontrol, operations
from gateway.sandbox.botapi import add_routes, answer_from_webhook
from gateway.sandbox.control import control
from gateway.sandbox.delivery import Deliveries
from gateway.sandbox.keys import SANDBOX_STATE
from gateway.sandbox.logs import install_redaction
from gateway.sandbox.replies import status_error
from gateway.sandbox.settings import SandboxSettings
from gateway.sandbox.state import BotState, SandboxState

DELIVERIES = web.AppKey("sandbox_deliveries", Deliveries)
#: The only request methods Telegram's Bot API server implements.
BOT_API_VERBS = frozenset({"GET", "POST"})
#: Room for Telegram's 50 MB uploads plus the multipart framing.
BODY_OVERHEAD = 1024 * 1024


def create_sandbox_app(settings: SandboxSettings | None = None) -> web.Application:
    """Build the sandbox: a local Telegram Bot API emulator with a control API.

    Serve it over plain HTTP (like Telegram's local Bot API server) and point clients at
    `http://host:port` as their API base. Pass `SandboxAccessLogger` to the `AppRunner` to keep
    tokens out of the access log (a redacting filter is installed on aiohttp's loggers too).
    """
    settings = settings or SandboxSettings()
    install_redaction()
    app = web.Application(
        client_max_size=settings.max_upload_bytes + BODY_OVERHEAD,
        middlewares=[_only_get_and_post],
    )
    sandbox = SandboxState(settings)
    app[SANDBOX_STATE] = sandbox
    add_routes(app)
    app.router.add_routes(conversation.ROUTES)
    app.router.add_routes(operations.ROUTES)
    app.router.add_routes(filecontrol.ROUTES)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_delivery_engine)
    app.on_shutdown.append(_release_pollers)
    return app


@web.middleware
async def _only_get_and_post(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Telegram's HTTP reader serves GET and POST only: anything else is a bare 501 and the
    connection is closed (the control API under /sandbox/ has its own verbs)."""
    if request.method in BOT_API_VERBS or request.path.startswith("/sandbox"):
        return await handler(request)
    response = web.Response(status=501)
    response.force_close()
    return response


async def _delivery_engine(app: web.Application) -> AsyncIterator[None]:
    sandbox = app[SANDBOX_STATE]

    async def answer(bot: BotState, payload: dict[str, Any]) -> None:
        await answer_from_webhook(sandbox, bot, payload)

    deliveries = Deliveries(sandbox, answer)
    app[DELIVERIES] = deliveries
    sandbox.webhook_listeners.append(deliveries.webhook_changed)
    for bot in sandbox.bots.values():
        deliveries.webhook_changed(bot)
    yield
    sandbox.webhook_listeners.remove(deliveries.webhook_changed)
    await deliveries.close()


async def _release_pollers(app: web.Application) -> None:
    """Let long-polling getUpdates calls return at once so shutdown does not wait for them."""
    sandbox = app[SANDBOX_STATE]
    sandbox.closing = True
    for bot in sandbox.bots.values():
        if bot.poller is not None and not bot.poller.done():
            bot.poller.set_result(None)


@control
async def _not_found(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/sandbox"):
        return web.json_response(
            {"error": f"no control route {request.method} {request.path}"}, status=404
        )
    return status_error(404).response()
