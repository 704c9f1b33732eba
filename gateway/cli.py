"""The `gateway` command: run, sandbox, gen-cert.

User mistakes end with one `error: ...` line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import constants as c
from gateway import redact
from gateway.certs import add_gen_cert_arguments, run_gen_cert
from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.sandbox import SandboxAccessLogger, SandboxSettings, create_sandbox_app
from gateway.server import sandbox, serve, with_api_base

logger = logging.getLogger("gateway")

EXIT_USAGE = 2
EXIT_FAILURE = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script and `python -m gateway`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    handler = {"run": _cmd_run, "sandbox": _cmd_sandbox, "gen-cert": run_gen_cert}[args.command]
    return int(handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="A Telegram bot behind a REST API."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway (sandbox mode when no bot token is set)")
    run.add_argument(
        "--config", default=None, help=f"TOML config file (default {c.DEFAULT_CONFIG_PATH})"
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    box = sub.add_parser("sandbox", help="run the local Telegram Bot API emulator")
    box.add_argument("--host", default=c.SANDBOX_HOST)
    box.add_argument("--port", type=int, default=c.SANDBOX_PORT)
    box.add_argument("--global-per-second", type=float, default=c.TELEGRAM_GLOBAL_PER_SECOND)
    box.add_argument("--chat-per-second", type=float, default=c.TELEGRAM_CHAT_PER_SECOND)
    box.add_argument("--group-per-minute", type=int, default=c.TELEGRAM_GROUP_PER_MINUTE)
    box.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    cert = sub.add_parser("gen-cert", help="generate a self-signed certificate for the webhook")
    add_gen_cert_arguments(cert)
    return parser


def setup_logging(level: str, secrets: Sequence[str] = ()) -> None:
    """Plain log lines on stderr, with bot tokens and the given secrets scrubbed."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redact.install(secrets)


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        return _fail(str(exc))
    secrets = [s.reveal() for s in (config.token, config.secret_token) if s is not None]
    redact.install(secrets)
    try:
        asyncio.run(_run(config))
    except GatewayError as exc:
        return _fail(redact.redact(str(exc), secrets))
    return 0


async def _run(config: Config) -> None:
    stop = _stop_event()
    if not config.sandbox_mode:
        async with serve(config):
            print(f"Telegram Gateway is running: {config.public_url}", flush=True)
            await stop.wait()
        return
    logger.info("no bot token configured (%s): running in sandbox mode", c.DEFAULT_TOKEN_FILE)
    async with sandbox(config) as base:
        live = with_api_base(config, base)
        async with serve(live):
            await _demo_user_starts_bot(base, config.sandbox.demo_user)
            print(_sandbox_banner(live, base), flush=True)
            await stop.wait()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _demo_user_starts_bot(base: str, user_id: int) -> None:
    """The demo user presses Start, as a real user must before a bot may write to them."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/sandbox/messages", json={"user_id": user_id, "text": "/start"}) as r,
    ):
        r.raise_for_status()


def _sandbox_banner(config: Config, base: str) -> str:
    cert = _display_path(config.certificate_path)
    enqueue = json.dumps({"text": "Hello from the gateway"})
    user = config.sandbox.demo_user
    write_in = json.dumps({"user_id": user, "text": "/help"})
    url = config.public_url
    return f"""
Telegram Gateway is running in SANDBOX mode (no bot token configured).
  gateway:  {url}   (webhook {config.telegram.webhook_path})
  sandbox:  {base}  (a local Telegram emulator; demo user {user})

Send a message to the demo user through the gateway:
  curl --cacert {cert} -H 'Content-Type: application/json' \\
       -d '{enqueue}' {url}{c.ENQUEUE_PATH}

See what the bot wrote in the demo user's chat:
  curl {base}/sandbox/chats/{user}/messages

Play the user writing /help to the bot (the answer appears in the chat above):
  curl -H 'Content-Type: application/json' -d '{write_in}' {base}/sandbox/messages

Health:  curl --cacert {cert} {url}{c.HEALTH_PATH}
Press Ctrl+C to stop. Put a bot token in {c.DEFAULT_TOKEN_FILE} to talk to real Telegram.
"""


def _display_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        settings = SandboxSettings(
            global_per_second=args.global_per_second,
            chat_per_second=args.chat_per_second,
            group_per_minute=args.group_per_minute,
        )
    except (TypeError, ValueError) as exc:
        return _fail(str(exc))
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
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", EXIT_FAILURE)
    return 0
