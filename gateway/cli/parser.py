"""The `gateway` command line: every command's arguments, nothing run."""

from __future__ import annotations

import argparse

from gateway import constants as c
from gateway.certargs import add_gen_cert_arguments
from gateway.ops.logformat import FORMATS


def build_parser() -> argparse.ArgumentParser:
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
