"""The webhook benchmark's baseline: aiogram's own `SimpleRequestHandler` over the gateway's TLS.

The listener is built like the gateway's (`gateway.certs.server_ssl_context`, `web.AppRunner`
+ `web.TCPSite`, no access log configured differently: aiohttp's default, as the gateway's),
and the bot does the least a bot must do to be comparable with the gateway:

- an outer middleware lets only the allowed user through (the gateway's `AllowedUsers` does
  the same first, before any handler);
- `/report` (aiogram's `Command` filter) stores one command durably in the gateway's own
  `SqliteQueue` (FULL durability, the same pragmas, thread and group commit) before the
  handler returns, as the gateway stores its dispatch before it answers;
- `handle_in_background=False`: the answer waits for the handler, as the gateway's does
  (aiogram's default answers first and handles later, which would not be durable).

    python bench/aiogram_server.py --host 127.1.2.3 --cert c.pem --key k.pem \
        --token-file bot_api.txt --secret-file webhook_secret.txt --allowed 1111 --queue q.db

The bot token and the webhook secret are read from files (never on a command line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message, TelegramObject, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from gateway.certs import load_certificate_pair, server_ssl_context
from gateway.commands import Command as QueuedCommand
from gateway.queue.sqlite import SqliteQueue

WEBHOOK_PATH = "/telegram/webhook"


class AllowedOnly(BaseMiddleware):
    """Drops updates whose sender is not `allowed` before any handler runs."""

    def __init__(self, allowed: frozenset[int]) -> None:
        self._allowed = allowed

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        user = getattr(event.event, "from_user", None)
        if user is not None and user.id in self._allowed:
            return await handler(event, data)
        return None


def create_app(
    bot: Bot, secret: str, allowed: frozenset[int], queue: SqliteQueue
) -> web.Application:
    """SimpleRequestHandler at WEBHOOK_PATH, /healthz, and the queue opened for the app's life."""
    router = Router()

    @router.message(Command("report"))
    async def report(message: Message) -> None:
        await queue.put(
            [
                QueuedCommand(
                    method="dispatch",
                    params={"chat_id": message.chat.id},
                    meta={"text": message.text, "message_id": message.message_id},
                )
            ]
        )

    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(AllowedOnly(allowed))
    dispatcher.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False, secret_token=secret).register(
        app, path=WEBHOOK_PATH
    )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    async def queue_ctx(_: web.Application) -> Any:
        await queue.open()
        yield
        await queue.close()
        await bot.session.close()

    app.cleanup_ctx.append(queue_ctx)
    return app


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    context = server_ssl_context(load_certificate_pair(args.cert, args.key))
    bot = Bot(args.token_file.read_text().strip())
    secret = args.secret_file.read_text().strip()
    app = create_app(bot, secret, frozenset(args.allowed), SqliteQueue(args.queue))
    runner = web.AppRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, args.host, args.port, ssl_context=context).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    parser.add_argument("--allowed", type=int, action="append", default=[])
    parser.add_argument("--queue", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
