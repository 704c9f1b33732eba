"""The `gateway` command: run, sandbox, gen-cert, token, updates.

User mistakes end with one `error: ...` line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import constants as c
from gateway.certargs import add_gen_cert_arguments
from gateway.errors import ConfigError, GatewayError
from gateway.ops.logformat import FORMATS

# Each command imports what it needs when it runs: the ones that do not talk to Telegram
# (`--help`, `token`, `gen-cert`, `backup`) never load aiogram, aiohttp, asyncpg or jinja2,
# which took seconds (aiogram's models alone) before any of them could start.
if TYPE_CHECKING:
    import asyncio

    from aiohttp import web

    from gateway.clients import ApiClient
    from gateway.config import Config
    from gateway.queue.base import FailedUpdate

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
        "gen-cert": _cmd_gen_cert,
        "token": _cmd_token,
        "updates": _cmd_updates,
        "backup": _cmd_backup,
        "check": _cmd_check,
        "migrate-queue": _cmd_migrate_queue,
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
    run.add_argument(
        "--log-format", default="text", choices=FORMATS, help="json: one object per line"
    )
    run.add_argument(
        "--make-certificate",
        action="store_true",
        help="when no certificate exists, make a self-signed one for public_url's host",
    )

    box = sub.add_parser("sandbox", help="run the local Telegram Bot API emulator")
    box.add_argument("--host", default=c.SANDBOX_HOST)
    box.add_argument("--port", type=int, default=c.SANDBOX_PORT)
    box.add_argument("--global-per-second", type=float, default=c.TELEGRAM_GLOBAL_PER_SECOND)
    box.add_argument("--chat-per-second", type=float, default=c.TELEGRAM_CHAT_PER_SECOND)
    box.add_argument("--group-per-minute", type=int, default=c.TELEGRAM_GROUP_PER_MINUTE)
    box.add_argument(
        "--paid-per-second",
        type=float,
        default=c.TELEGRAM_PAID_PER_SECOND,
        help="paid broadcast: with allow_paid_broadcast, sends up to this many per second "
        f"(all sends counted; default {c.TELEGRAM_PAID_PER_SECOND}); 0: paid broadcast off",
    )
    box.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    cert = sub.add_parser("gen-cert", help="generate a self-signed certificate for the webhook")
    add_gen_cert_arguments(cert)

    token = sub.add_parser("token", help="manage API clients (add, list, revoke, callback-key)")
    _token_file_options(token, None)
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a client and print its token once")
    _token_file_options(add)
    add.add_argument("name")
    add.add_argument("--chat", action="append", default=[], help="allowed chat id (repeat)")
    add.add_argument("--method", action="append", default=[], help="allowed method (repeat)")
    add.add_argument("--rate", help="rate limit, e.g. 10/s or 600/m")
    add.add_argument("--sign", action="store_true", help="require signed requests")
    _token_file_options(actions.add_parser("list", help="list clients (never their tokens)"))

    check = sub.add_parser("check", help="check a deployment: config, certificate, Telegram, ...")
    check.add_argument("--config", default=None, help=f"default {c.DEFAULT_CONFIG_PATH}")
    check.add_argument("--json", action="store_true", help="one JSON object on stdout")

    backup = sub.add_parser("backup", help="copy the queue database while the gateway runs")
    backup.add_argument("path", help="the new file (never overwritten; made 0600)")
    backup.add_argument("--config", default=None, help="read [queue] path from this file")
    revoke = actions.add_parser("revoke", help="remove a client")
    revoke.add_argument("name")
    _token_file_options(revoke)
    key = actions.add_parser(
        "callback-key", help="print the key that signs a client's callbacks (callback_url)"
    )
    key.add_argument("name")
    _token_file_options(key)

    move = sub.add_parser(
        "migrate-queue",
        help="move queued commands, open questions and idempotency keys from SQLite to "
        "PostgreSQL (stop the SQLite gateway first)",
    )
    move.add_argument("--from", dest="source", required=True, help="the SQLite queue file")
    move.add_argument(
        "--to",
        dest="target",
        default=None,
        help="postgresql://... (default: $GATEWAY_QUEUE_DSN, which keeps a password out of ps)",
    )
    move.add_argument(
        "--media",
        default=None,
        help="the [media] dir whose files the moved commands refer to (default: media/ next "
        "to the --from file)",
    )
    updates = sub.add_parser("updates", help="inspect webhook updates (dead letters)")
    update_actions = updates.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = update_actions.add_parser(
        "list", help="list updates aiogram could not validate (read-only, safe while running)"
    )
    listing.add_argument(
        "--failed", action="store_true", required=True, help="the dead letters (required)"
    )
    listing.add_argument(
        "--config", default=None, help=f"TOML config file (default {c.DEFAULT_CONFIG_PATH})"
    )
    listing.add_argument("--json", action="store_true", help="JSON, with each update's body")
    listing.add_argument("--limit", type=int, default=50, help="newest N (default 50)")
    return parser


def _token_file_options(
    parser: argparse.ArgumentParser, default: str | None = argparse.SUPPRESS
) -> None:
    """`--file`, `--callback-secret-file` and `--config` of `gateway token`: accepted before
    the action (`token --config X add ci`) and after it (`token add ci --config X`, as
    `check` and `backup` take them). The action's copies default to SUPPRESS, so they
    never overwrite a value given before the action."""
    parser.add_argument(
        "--file",
        default=default,
        help="the clients file (default: --config's [server] clients_file, else "
        f"$GATEWAY_SERVER_CLIENTS_FILE, else {c.DEFAULT_CLIENTS_FILE})",
    )
    parser.add_argument(
        "--callback-secret-file",
        default=default,
        help="the gateway's callback secret (default: --config's [server] callback_secret_file, "
        f"else $GATEWAY_SERVER_CALLBACK_SECRET_FILE, else {c.DEFAULT_CALLBACK_SECRET_FILE})",
    )
    parser.add_argument(
        "--config",
        default=default,
        help="read [server] clients_file and callback_secret_file from this file",
    )


def setup_logging(level: str, secrets: Sequence[str] = (), log_format: str = "text") -> None:
    """Log lines (plain or JSON) on stderr, with bot tokens and the given secrets scrubbed."""
    from gateway import redact
    from gateway.ops.logformat import make_formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    redact.install(secrets)


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import redact
    from gateway.config import load_config
    from gateway.ops.firstrun import make_missing_certificate

    setup_logging(args.log_level, log_format=args.log_format)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        return _fail(str(exc))
    secrets = [s.reveal() for s in (config.token, config.secret_token) if s is not None]
    redact.install(secrets)
    try:
        if args.make_certificate:
            make_missing_certificate(config)
        asyncio.run(_run(config))
    except GatewayError as exc:
        return _fail(redact.redact(str(exc), secrets))
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


def _cmd_token(args: argparse.Namespace) -> int:
    from gateway.clients import add_client, parse_rate, read_clients, revoke_client
    from gateway.config import clients_file_of

    try:
        path = Path(args.file) if args.file else clients_file_of(args.config, os.environ)
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
            print("Its callback key (checks X-Gateway-Signature on its callbacks, see README):")
            print(f"  {_callback_key(args)}")
            print("A running gateway picks it up within seconds (or at once on SIGHUP).")
        elif args.action == "list":
            clients = read_clients(path)
            if not clients:
                print(f"no API clients in {path}")
            for client in clients:
                print(_describe_client(client))
        elif args.action == "callback-key":
            if not any(client.name == args.name for client in read_clients(path)):
                raise ConfigError(f"no client named {args.name!r} in {path}")
            print(_callback_key(args))
        else:
            revoke_client(path, args.name)
            print(f"Revoked API client {args.name!r}; its token stops working within seconds.")
    except ConfigError as exc:
        return _fail(str(exc))
    return 0


def _cmd_updates(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.config import load_config
    from gateway.queue.deadletters import read_failed_updates

    try:
        config = load_config(args.config, os.environ)
        if config.queue.backend == "memory":
            raise ConfigError("the queue backend is 'memory': no dead letters are kept on disk")
        if args.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if config.queue.backend == "postgres":
            failed = asyncio.run(_postgres_failed_updates(config.queue_dsn.reveal(), args.limit))
        else:
            failed = read_failed_updates(config.queue_path, args.limit)
    except GatewayError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([_dead_letter_json(f) for f in failed], indent=2, ensure_ascii=False))
        return 0
    if not failed:
        where = config.queue_path if config.queue.backend == "sqlite" else "the queue database"
        print(f"no failed updates in {where}")
    for update in failed:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(update.received_at))
        print(f"{when} update {update.update_id}: {update.error}; {update.handled}")
    return 0


def _cmd_migrate_queue(args: argparse.Namespace) -> int:
    import asyncio
    from urllib.parse import urlsplit

    from gateway.ops.migrate import migrate_queue

    dsn = args.target or os.environ.get("GATEWAY_QUEUE_DSN", "")
    if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        return _fail("--to (or GATEWAY_QUEUE_DSN) must be a postgresql://... URL")
    try:
        media = Path(args.media) if args.media else None
        moved = asyncio.run(migrate_queue(Path(args.source), dsn, time.time(), media))
    except GatewayError as exc:
        return _fail(str(exc))
    print(
        f"moved {moved.queued} queued command(s), {moved.questions} open question(s), "
        f"{moved.keys_only} delivered command(s) kept for their idempotency key and "
        f"{moved.parts} sent part(s), with {moved.files} file(s); {moved.skipped} already "
        "there. Start the gateway with "
        '[queue] backend = "postgres" now.'
    )
    return 0


async def _postgres_failed_updates(dsn: str, limit: int) -> list[FailedUpdate]:
    from gateway.queue.postgres import PostgresQueue

    queue = PostgresQueue(dsn, pool_size=1)
    await queue.open()
    try:
        return await queue.failed_updates(limit)
    finally:
        await queue.close()


def _dead_letter_json(update: FailedUpdate) -> dict[str, Any]:
    try:
        body: Any = json.loads(update.body)
    except ValueError:
        body = update.body
    return {
        "update_id": update.update_id,
        "bot_id": update.bot_id,
        "received_at": update.received_at,
        "error": update.error,
        "handled": update.handled,
        "update": body,
    }


def _callback_key(args: argparse.Namespace) -> str:
    """The client's callback key, derived from the callback secret (created if missing)."""
    from gateway.config import path_setting
    from gateway.guards import callback_key
    from gateway.secretfiles import read_or_create_secret

    path = (
        Path(args.callback_secret_file)
        if args.callback_secret_file
        else path_setting(args.config, os.environ, "server", "callback_secret_file")
    )
    secret = read_or_create_secret(path, str(path), "callback signing key")
    return callback_key(secret, args.name)


def _cmd_check(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.ops.check import run_checks

    checks = asyncio.run(run_checks(args.config, os.environ))
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        report = {"ok": not failed, "checks": [check.as_dict() for check in checks]}
        print(json.dumps(report, indent=2))
    else:
        for check in checks:
            print(check.line())
    return EXIT_FAILURE if failed else 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from gateway.config import path_setting
    from gateway.ops.backup import backup_database, backup_media

    target = Path(args.path)
    media_target = target.with_name(target.name + ".media")
    try:
        source = path_setting(args.config, os.environ, "queue", "path")
        media_dir = path_setting(args.config, os.environ, "media", "dir")
        if media_target.exists():
            raise ConfigError(f"{media_target} already exists; choose a new name for the backup")
        info = backup_database(source, target)
        media = backup_media(target, media_dir, media_target)
    except ConfigError as exc:
        return _fail(str(exc))
    print(
        f"backed up {source} to {info.path}: {info.commands} command(s), "
        f"schema version {info.schema_version}, {info.size} bytes"
    )
    if media is not None:
        print(
            f"and {media.files} file(s) queued commands still need to {media.directory} "
            f"({media.size} bytes); restore them into [media] dir ({media_dir})"
        )
        if media.missing:
            print(
                f"warning: {media.missing} file(s) were gone (their commands were delivered "
                "after the snapshot was taken)",
                file=sys.stderr,
            )
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


def _cmd_gen_cert(args: argparse.Namespace) -> int:
    from gateway.certs import run_gen_cert

    return run_gen_cert(args)


def _cmd_sandbox(args: argparse.Namespace) -> int:
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
