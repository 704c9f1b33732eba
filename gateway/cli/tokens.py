"""`gateway token`: add, list, revoke API clients and print their callback keys."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import fail
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.clients import ApiClient


def cmd_token(args: argparse.Namespace) -> int:
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
        return fail(str(exc))
    return 0


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
