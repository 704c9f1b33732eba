"""The `gateway` command: run, sandbox, gen-cert.

User mistakes end with one `error: ...` line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
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
from gateway import keys, redact
from gateway.certs import add_gen_cert_arguments, run_gen_cert
from gateway.clients import (
    ApiClient,
    add_client,
    hash_token,
    new_token,
    parse_rate,
    read_clients,
    revoke_client,
)
from gateway.config import Config, load_config
from gateway.demo import demo_service
from gateway.errors import ConfigError, GatewayError
from gateway.listener import raise_open_file_limit
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
    handlers = {
        "run": _cmd_run,
        "sandbox": _cmd_sandbox,
        "gen-cert": run_gen_cert,
        "token": _cmd_token,
    }
    return int(handlers[args.command](args))


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

    token = sub.add_parser("token", help="manage API clients (add, list, revoke)")
    token.add_argument(
        "--file",
        default=os.environ.get("GATEWAY_SERVER_CLIENTS_FILE", c.DEFAULT_CLIENTS_FILE),
        help=f"the clients file (default {c.DEFAULT_CLIENTS_FILE})",
    )
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a client and print its token once")
    add.add_argument("name")
    add.add_argument("--chat", action="append", default=[], help="allowed chat id (repeat)")
    add.add_argument("--method", action="append", default=[], help="allowed method (repeat)")
    add.add_argument("--rate", help="rate limit, e.g. 10/s or 600/m")
    add.add_argument("--sign", action="store_true", help="require signed requests")
    actions.add_parser("list", help="list clients (never their tokens)")
    revoke = actions.add_parser("revoke", help="remove a client")
    revoke.add_argument("name")
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
    gc.collect()
    gc.freeze()


def _reload_clients_on_sighup(app: web.Application) -> None:
    registry = app[keys.CLIENTS]
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: registry.reload_if_changed(force=True)
        )


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


def _cmd_token(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        if args.action == "add":
            rate = parse_rate(args.rate) if args.rate else None
            chats = [_chat_arg(chat) for chat in args.chat]
            token, secret = add_client(
                path,
                args.name,
                chats=chats,
                methods=args.method,
                rate_per_second=rate,
                signing=args.sign,
            )
            print(f"Created API client {args.name!r} in {path}.")
            print("Its token, shown only now (the file keeps only its SHA-256):")
            print(f"  {token}")
            if secret:
                print("Its signing secret (sign every request with it, see README):")
                print(f"  {secret}")
            print("A running gateway picks it up within seconds (or at once on SIGHUP).")
        elif args.action == "list":
            clients = read_clients(path)
            if not clients:
                print(f"no API clients in {path}")
            for client in clients:
                print(_describe_client(client))
        else:
            revoke_client(path, args.name)
            print(f"Revoked API client {args.name!r}; its token stops working within seconds.")
    except ConfigError as exc:
        return _fail(str(exc))
    return 0


def _chat_arg(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        if value.startswith("@") and len(value) > 1:
            return value
        raise ConfigError(f"--chat must be a numeric chat id or @channel, not {value!r}") from None


def _describe_client(client: ApiClient) -> str:
    chats = "*" if client.chats is None else ",".join(sorted(map(str, client.chats)))
    methods = "*" if client.methods is None else ",".join(sorted(client.methods))
    rate = f"{client.rate_per_second:g}/s" if client.rate_per_second else "unlimited"
    signed = "signed" if client.signing_secret else "unsigned"
    return (
        f"{client.name}: chats={chats} methods={methods} rate={rate} {signed} {client.created_at}"
    )


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
