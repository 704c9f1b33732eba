"""`gateway updates list --failed`: the webhook updates aiogram could not validate."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING, Any

from gateway.cli.common import fail
from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from gateway.queue.base import FailedUpdate


def cmd_updates(args: argparse.Namespace) -> int:
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
        return fail(str(exc))
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
