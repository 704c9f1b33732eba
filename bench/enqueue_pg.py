"""Enqueue throughput on PostgreSQL: 1, 2 and 3 replicas against one replica on SQLite.

One run starts a sandbox, one gateway on SQLite and three replicas of another gateway on a
private PostgreSQL server (bench/cluster_common.py; default durability), each on its own
127.x.y.z address. The first replica starts alone and leads (it delivers the queue in the
background, like the SQLite gateway does); the other two follow. Four kinds of rounds
alternate after a warm-up each:

- `sqlite`: the SQLite gateway; the replicas are paused (SIGSTOP);
- `postgres-1`, `-2`, `-3`: the same `--concurrency` connections spread evenly over the first
  1, 2 or 3 replicas; the SQLite gateway is paused.

The load generator is `wrk -t1` per replica in use (default when wrk is installed) or this
process's aiohttp client. Each round also records the CPU time of the gateways under test,
of PostgreSQL (all its processes) and of the client, per request: on a 2-core machine the
client, the database and the replicas share the same cores, so more replicas cannot add
throughput once they are busy [targets: postgres-1 >= 0.7 x sqlite; throughput that grows
with replicas where there are cores for them].

    .venv/bin/python bench/enqueue_pg.py [--rounds 5] [--seconds 5] [--concurrency 32]
                                         [--client wrk|aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from cluster_common import (
    Group,
    Load,
    alternate,
    cluster,
    loadavg,
    medians,
    postgres,
    postgres_counters,
)
from common import (
    JSON_HEADERS,
    add_client_option,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    load_parser,
    make_workspace,
    parse_load_args,
    plain_session,
    sandbox_process,
    temp_root,
    write_result,
)
from enqueue import CHATS, MAX_REQUESTS_PER_ROUND, WRK_SCRIPT, children_cpu_seconds, parse_wrk

TARGET_RATIO = 0.7
REPLICAS = 3


def aiohttp_load(concurrency: int) -> Load:
    """`concurrency` keep-alive requests in flight from this process, lane i on endpoint i % n."""
    bodies = [enqueue_body(chat) for chat in range(1, CHATS + 1)]

    async def load(group: Group, seconds: float) -> tuple[int, int, float, float]:
        counts = {"ok": 0, "errors": 0}
        deadline = time.monotonic() + seconds

        async def lane(offset: int) -> None:
            base, http = group.endpoints[offset % len(group.endpoints)]
            n = offset
            while time.monotonic() < deadline and n < MAX_REQUESTS_PER_ROUND:
                body = bodies[n % len(bodies)]
                n += concurrency
                try:
                    url = f"{base}/enqueue_command"
                    async with http.post(url, data=body, headers=JSON_HEADERS) as resp:
                        await resp.read()
                        counts["ok" if resp.status == 202 else "errors"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1

        client = time.process_time()
        start = time.monotonic()
        await asyncio.gather(*(lane(i) for i in range(concurrency)))
        elapsed = time.monotonic() - start
        return counts["ok"], counts["errors"], elapsed, time.process_time() - client

    return load


def wrk_load(concurrency: int, workdir: Path, api_token: str) -> Load:
    """One `wrk -t1` per endpoint, the connections split evenly, all at once; the rate is
    the sum of their rates."""
    script = workdir / "enqueue.lua"
    script.write_text(WRK_SCRIPT.replace("CHATS", str(CHATS)).replace("TOKEN", api_token))

    async def one(base: str, connections: int, seconds: float) -> tuple[int, int, float]:
        argv = [
            *("wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"),
            *("-s", str(script), f"{base}/enqueue_command"),
        ]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        r = parse_wrk("", out.decode(), 0.0, 0.0)
        return r.ok, r.errors, r.seconds

    async def load(group: Group, seconds: float) -> tuple[int, int, float, float]:
        n = len(group.endpoints)
        split = [concurrency // n + (i < concurrency % n) for i in range(n)]
        client = children_cpu_seconds()
        runs = await asyncio.gather(
            *(one(base, c, seconds) for (base, _), c in zip(group.endpoints, split, strict=True))
        )
        ok = sum(r[0] for r in runs)
        rate = sum(r[0] / r[2] for r in runs)
        errors = sum(r[1] for r in runs)
        return ok, errors, ok / rate if rate else seconds, children_cpu_seconds() - client

    return load


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_root() as root, postgres() as pg:
        dsn = pg.new_database()
        sqlite_ws = make_workspace(root / "ws-sqlite")
        pg_ws = make_workspace(root / "ws-postgres", exclude_hosts=[sqlite_ws.host])
        # One bot and one API client for both (the sandbox knows one token per bot; the wrk
        # script carries one bearer token).
        for name in ("bot_api.txt", "api_clients.toml"):
            shutil.copy2(sqlite_ws.root / "config/secrets" / name, pg_ws.root / "config/secrets")
        pg_ws = dataclasses.replace(pg_ws, token=sqlite_ws.token, api_token=sqlite_ws.api_token)
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            sqlite_http = await stack.enter_async_context(
                https_session(sqlite_ws, args.concurrency)
            )
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            await create_chats(control, sandbox.url, range(1, CHATS + 1))
            sqlite_gw = await stack.enter_async_context(
                gateway_process(sqlite_ws, sandbox.url, sqlite_http)
            )
            replicas = await stack.enter_async_context(
                cluster(
                    root,
                    pg_ws,
                    sandbox.url,
                    dsn,
                    REPLICAS,
                    connections=args.concurrency,
                    exclude_hosts=[sqlite_ws.host],
                )
            )
            leader = await replicas.wait_leader()
            endpoints = [
                (ws.gateway_url, http)
                for ws, http in zip(replicas.workspaces, replicas.sessions, strict=True)
            ]
            groups = [
                Group(
                    "sqlite",
                    [(sqlite_gw.url, sqlite_http)],
                    {"sqlite": sqlite_gw.pid},
                    list(replicas.pids().values()),
                )
            ]
            groups += [
                Group(f"postgres-{n}", endpoints[:n], replicas.pids(), [sqlite_gw.pid])
                for n in range(1, REPLICAS + 1)
            ]
            load = (
                wrk_load(args.concurrency, root, pg_ws.api_token)
                if args.client == "wrk"
                else aiohttp_load(args.concurrency)
            )
            conn = await asyncpg.connect(dsn)
            stack.push_async_callback(conn.close)
            start_load = loadavg()
            rounds = await alternate(
                groups,
                load,
                rounds=args.rounds,
                seconds=args.seconds,
                warmup=args.warmup,
                counters=postgres_counters(pg, conn),
            )
    figures = medians(rounds)
    sqlite_rps = figures["sqlite"]["median_rps"]
    one = figures["postgres-1"]["median_rps"]
    ratios = {
        f"postgres-{n}_to_sqlite": round(figures[f"postgres-{n}"]["median_rps"] / sqlite_rps, 3)
        for n in range(1, REPLICAS + 1)
    }
    ratios.update(
        {
            f"postgres-{n}_to_postgres-1": round(figures[f"postgres-{n}"]["median_rps"] / one, 3)
            for n in range(2, REPLICAS + 1)
        }
    )
    return {
        "settings": {
            **vars(args),
            "chats": CHATS,
            "postgres": "private server, defaults (fsync, synchronous_commit on)",
            "leader": f"r{leader}",
        },
        "loadavg_at_start": start_load,
        "loadavg_at_end": loadavg(),
        "groups": figures,
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "met": ratios["postgres-1_to_sqlite"] >= TARGET_RATIO,
        "rounds": [
            {"group": r.group, "rate": round(r.rate, 1), "errors": r.errors} for r in rounds
        ],
    }


def parse_args() -> argparse.Namespace:
    parser = load_parser(__doc__.splitlines()[0])
    add_client_option(
        parser,
        "wrk?",
        "load generator: wrk -t1 per replica (default when installed) or this process",
    )
    return parse_load_args(parser)


def main() -> None:
    args = parse_args()
    print(
        f"enqueue_pg: {args.rounds} x {args.seconds:g}s per group, concurrency "
        f"{args.concurrency}, client {args.client}; load {loadavg()}",
        flush=True,
    )
    result = asyncio.run(run(args))
    path = write_result(f"enqueue-postgres-{args.client}", result)
    for name, g in result["groups"].items():
        cpu = g["cpu_us_per_request"]
        print(
            f"{name:<11} {g['median_rps']:8.1f} req/s  CPU/request: servers {cpu['servers']} us, "
            f"postgres {cpu['postgres']} us, client {cpu['client']} us (total {cpu['total']}); "
            f"each server {g['server_cpu_us_per_request']} us; "
            f"cores busy {g['cores_busy']}; per request {g['per_request']}; errors {g['errors']}"
        )
    print(
        f"ratios {result['ratios']} (postgres-1 target >= {TARGET_RATIO}: "
        f"{'met' if result['met'] else 'NOT met'}); load {result['loadavg_at_end']}\n-> {path}"
    )


if __name__ == "__main__":
    main()
