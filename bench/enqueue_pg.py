"""Enqueue throughput on PostgreSQL: one gateway replica on postgres vs one on SQLite.

Both gateways run side by side in one run (each its own workspace and 127.x.y.z address, one
sandbox), the postgres one against a private PostgreSQL server started for the run
(tests/pg_helpers.py: initdb + pg_ctl in a temporary directory, default durability:
`synchronous_commit = on`, `fsync = on`). The same client as bench/enqueue.py drives them in
alternating rounds after a warm-up each, the other gateway paused (SIGSTOP) meanwhile; the
figures are the medians over rounds and their ratio [target: postgres >= 0.7 x sqlite].

    .venv/bin/python bench/enqueue_pg.py [--rounds 5] [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
from pathlib import Path

from common import (
    create_chats,
    gateway_process,
    https_session,
    make_workspace,
    plain_session,
    sandbox_process,
    temp_root,
    write_result,
)
from enqueue import CHATS, Target, aiohttp_loader, paused

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pg_helpers import running_postgres

TARGET_RATIO = 0.7


async def run(args: argparse.Namespace) -> dict[str, object]:
    with temp_root() as root, running_postgres() as pg:
        dsn = pg.new_database()
        sqlite_ws = make_workspace(root / "ws-sqlite")
        pg_ws = make_workspace(root / "ws-postgres", exclude_hosts=[sqlite_ws.host])
        # One bot for both (the sandbox knows one token per bot).
        (pg_ws.root / "config/secrets/bot_api.txt").write_text(sqlite_ws.token + "\n")
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            sqlite_http = await stack.enter_async_context(
                https_session(sqlite_ws, args.concurrency)
            )
            pg_http = await stack.enter_async_context(https_session(pg_ws, args.concurrency))
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            await create_chats(control, sandbox.url, range(1, CHATS + 1))
            sqlite_gw = await stack.enter_async_context(
                gateway_process(sqlite_ws, sandbox.url, sqlite_http)
            )
            pg_env = {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN": dsn}
            pg_gw = await stack.enter_async_context(
                gateway_process(pg_ws, sandbox.url, pg_http, pg_env)
            )
            targets = [Target("postgres", pg_gw, pg_http), Target("sqlite", sqlite_gw, sqlite_http)]
            load = aiohttp_loader(args.concurrency)
            # The other gateway is paused (SIGSTOP) while one is measured: its worker's
            # background delivery must not take CPU from the one under load.
            other = {"postgres": sqlite_gw, "sqlite": pg_gw}
            for target in targets:
                with paused(other[target.name]):
                    await load(target, args.warmup)
            rounds = []
            for index in range(args.rounds):
                for target in targets:
                    with paused(other[target.name]):
                        result = await load(target, args.seconds)
                    print(f"  round {index + 1} {target.name:<9} {result.rate:8.0f} req/s")
                    rounds.append(result)
    medians = {
        name: statistics.median(r.rate for r in rounds if r.server == name)
        for name in ("postgres", "sqlite")
    }
    ratio = medians["postgres"] / medians["sqlite"]
    return {
        "settings": {**vars(args), "chats": CHATS, "postgres": "15, private server, defaults"},
        "postgres_median_rps": round(medians["postgres"], 1),
        "sqlite_median_rps": round(medians["sqlite"], 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "errors": sum(r.errors for r in rounds),
        "rounds": [{"server": r.server, "rate": round(r.rate, 1)} for r in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    path = write_result("enqueue-postgres", result)
    print(
        f"postgres {result['postgres_median_rps']} req/s, sqlite {result['sqlite_median_rps']} "
        f"req/s (medians, one replica each); ratio {result['ratio']} (target >= {TARGET_RATIO}: "
        f"{'met' if result['met'] else 'NOT met'}); errors {result['errors']}"
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
