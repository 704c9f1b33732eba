"""`gateway run` (sandbox mode with a demo client when no bot token is set) and
`gateway sandbox` (the local Telegram Bot API emulator on its own)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import constants as c
from gateway.cli.common import EXIT_FAILURE, fail, setup_logging
from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    import asyncio

    from aiohttp import web

    from gateway.config import Config

logger = logging.getLogger("gateway")


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import redact
    from gateway.config import load_config
    from gateway.ops.firstrun import make_missing_certificate

    setup_logging(args.log_level, log_format=args.log_format)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        return fail(str(exc))
    secrets = [s.reveal() for s in (config.token, config.secret_token) if s is not None]
    redact.install(secrets)
    try:
        if args.make_certificate:
            make_missing_certificate(config)
        asyncio.run(_run(config))
    except GatewayError as exc:
        return fail(redact.redact(str(exc), secrets))
    return 0


async def _run(config: Config) -> None:
    import dataclasses

    from gateway.clients import ApiClient, hash_token, new_token
    from gateway.demo import demo_service
    from gateway.listener import raise_open_file_limit
    from gateway.server import sandbox, serve, with_api_base

    stop = _stop_event()
    raise_open_file_limit()  # room for max_connections and for the reserve kept beside them
    if not config.sandbox_mode:
        async with serve(config) as app:
            _reload_clients_on_sighup(app)
            _freeze_startup_objects()
            print(f"Telegram Gateway is running: {config.public_url}", flush=True)
            await stop.wait()
        return
    logger.info("no bot token configured (%s): running in sandbox mode", c.DEFAULT_TOKEN_FILE)
    demo_token = new_token()
    demo = ApiClient(name="sandbox-demo", token_sha256=hash_token(demo_token))
    async with sandbox(config) as base, demo_service(config.sandbox.host) as echo:
        # The demo chat exists before the worker starts: what a previous run left queued for
        # the demo user is delivered, not refused with "chat not found".
        await _sandbox_post(base, "chats", {"chat_id": config.sandbox.demo_user, "type": "private"})
        live = with_api_base(config, base)
        if not config.routes:  # show command routing with a demo service
            live = dataclasses.replace(live, routes=(echo,))
        async with serve(live, extra_clients=[demo]) as app:
            _reload_clients_on_sighup(app)
            _freeze_startup_objects()
            await _demo_user_starts_bot(base, config.sandbox.demo_user)
            print(_sandbox_banner(live, base, demo_token), flush=True)
            await stop.wait()


def _freeze_startup_objects() -> None:
    """What start-up built (aiogram's models above all) lives as long as the process: keep its
    ~200,000 objects out of the garbage collector's full passes (each took ~0.1 s of CPU)."""
    import gc

    gc.collect()
    gc.freeze()


def _reload_clients_on_sighup(app: web.Application) -> None:
    import asyncio
    import signal

    from gateway import keys

    registry = app[keys.CLIENTS]
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: registry.reload_if_changed(force=True)
        )


def _stop_event() -> asyncio.Event:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _demo_user_starts_bot(base: str, user_id: int) -> None:
    """The demo user presses Start, as a real user must before a bot may write to them."""
    await _sandbox_post(base, "messages", {"user_id": user_id, "text": "/start"})


async def _sandbox_post(base: str, path: str, body: dict[str, object]) -> None:
    """Play the user's side through the sandbox's control API, as the sandbox's own bot."""
    import aiohttp

    body = {**body, "bot_id": int(c.SANDBOX_TOKEN.partition(":")[0])}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/sandbox/{path}", json=body) as r,
    ):
        r.raise_for_status()


def _sandbox_banner(config: Config, base: str, token: str) -> str:
    cert = _display_path(config.certificate_path)
    auth = f"-H 'Authorization: Bearer {token}'"
    enqueue = json.dumps({"text": "Hello from the gateway"})
    user = config.sandbox.demo_user
    write_in = json.dumps({"user_id": user, "text": "/help"})
    routed = json.dumps({"user_id": user, "text": "/echo hello from Telegram"})
    question = json.dumps(
        {"text": "Deploy api v1.2?", "expect_reply": {"buttons": [["Approve", "Reject"]]}}
    )
    url = config.public_url
    return f"""
Telegram Gateway is running in SANDBOX mode (no bot token configured).
  gateway:  {url}   (webhook {config.telegram.webhook_path})
  sandbox:  {base}  (a local Telegram emulator; demo user {user})

API token of the demo client (valid until the gateway stops):
  {token}

Send a message to the demo user through the gateway:
  curl --cacert {cert} {auth} -H 'Content-Type: application/json' \\
       -d '{enqueue}' {url}{c.ENQUEUE_PATH}

See what the bot wrote in the demo user's chat:
  curl {base}/sandbox/chats/{user}/messages

Play the user writing /help to the bot (the answer appears in the chat above):
  curl -H 'Content-Type: application/json' -d '{write_in}' {base}/sandbox/messages

Play the user running /echo, a command routed to a demo internal service:
  curl -H 'Content-Type: application/json' -d '{routed}' {base}/sandbox/messages

Ask the demo user a question with buttons (answers {{"id": "cmd_..."}}):
  curl --cacert {cert} {auth} -H 'Content-Type: application/json' \\
       -d '{question}' {url}{c.ENQUEUE_PATH}
Tap "Approve" as the demo user: the button's data is q:<id>:<row>.<column>, and the
message_id is the "result" of GET {c.COMMANDS_PATH}/<id>:
  curl -H 'Content-Type: application/json' \\
       -d '{{"user_id": {user}, "message_id": MESSAGE_ID, "data": "q:ID:0.0"}}' \\
       {base}/sandbox/callbacks
The answer, with who gave it:
  curl --cacert {cert} {auth} {url}{c.COMMANDS_PATH}/ID

Health:  curl --cacert {cert} {url}{c.HEALTH_PATH}
Press Ctrl+C to stop. Put a bot token in {c.DEFAULT_TOKEN_FILE} to talk to real Telegram.
"""


def _display_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.sandbox import SandboxAccessLogger, SandboxSettings, create_sandbox_app

    setup_logging(args.log_level)
    try:
        settings = SandboxSettings(
            global_per_second=args.global_per_second,
            chat_per_second=args.chat_per_second,
            group_per_minute=args.group_per_minute,
            paid_per_second=args.paid_per_second,
        )
    except (TypeError, ValueError) as exc:
        return fail(str(exc))
    print(f"Telegram Bot API sandbox on http://{args.host}:{args.port}", flush=True)
    try:
        web.run_app(
            create_sandbox_app(settings),
            host=args.host,
            port=args.port,
            print=None,
            access_log_class=SandboxAccessLogger,
        )
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", EXIT_FAILURE)
    return 0
