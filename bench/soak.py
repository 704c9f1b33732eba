"""Soak: 300,000 commands through a gateway with a short retention; storage and RSS stay flat.

The gateway (durable SQLite queue, `[queue] retention` of `--retention` seconds, flood limits
raised far above the load) delivers to a sandbox whose limits are lifted too, over `--chats`
private chats. Messages are enqueued through the HTTP API at a steady `--rate` per second
(`--concurrency` connections) until `--commands` were accepted, holding back while more than
`--backlog` commands are queued: the worker sets the pace, since queued commands are not final
and a growing backlog would be kept, as it should. Every `--interval` seconds the
bench samples the database file plus its write-ahead log (`stat`), the gateway's VmRSS and its
`/metrics` (accepted, sent, pruned, depth, `gateway_queue_database_bytes`). After the last
202 it waits for the queue to drain, then one more retention period, to show the file giving
the space back once traffic stops.

Expected shape: both grow during the first retention period (the rows of one period are kept),
then stay flat while the pruner deletes as much as arrives [target: the figures at the end of
the push within 1.25 x those one retention period in].

    .venv/bin/python bench/soak.py [--commands 300000] [--retention 60] [--rate 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    JSON_HEADERS,
    Service,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    make_workspace,
    plain_session,
    rss_kib,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)

#: Far above what two cores deliver: the bench measures storage, not flood control.
LIFTED_GLOBAL = 1_000_000
LIFTED_CHAT = 10_000
#: Upper bound of the drain after the push, and of the tail after it (on top of retention).
DRAIN_LIMIT_SECONDS = 600.0
TAIL_MARGIN_SECONDS = 20.0
BACKPRESSURE_POLL_SECONDS = 0.5


def database_bytes(path: Path) -> int:
    """The database file plus its write-ahead log, as the metric counts them."""
    return _size(path) + _size(Path(f"{path}-wal"))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Sampler:
    """Samples storage, RSS and the gateway's counters every `interval` seconds."""

    def __init__(self, gw: Service, http: aiohttp.ClientSession, db: Path, interval: float) -> None:
        self.gw, self.http, self.db, self.interval = gw, http, db, interval
        self.samples: list[dict[str, Any]] = []
        self.start = time.monotonic()
        self.phase = "push"

    async def sample(self) -> dict[str, Any]:
        metrics = await scrape_metrics(self.http, self.gw.url)
        row = {
            "t": round(time.monotonic() - self.start, 1),
            "phase": self.phase,
            "db_bytes": database_bytes(self.db),
            "wal_bytes": _size(Path(f"{self.db}-wal")),
            "metric_db_bytes": metrics.get("gateway_queue_database_bytes", 0.0),
            "rss_kib": rss_kib(self.gw.pid),
            "accepted": metrics.get("gateway_commands_accepted_total", 0.0),
            "sent": metrics.get("gateway_commands_sent_total", 0.0),
            "pruned": metrics.get("gateway_commands_pruned_total", 0.0),
            "depth": metrics.get("gateway_queue_depth", 0.0),
        }
        row["rows"] = row["accepted"] - row["pruned"]
        self.samples.append(row)
        print(
            f"  t={row['t']:6.1f}s {row['phase']:5} db+wal {row['db_bytes'] / 2**20:7.1f} MiB "
            f"(wal {row['wal_bytes'] / 2**20:4.1f})  "
            f"RSS {row['rss_kib'] / 1024:6.1f} MiB  accepted {row['accepted']:8.0f}  "
            f"sent {row['sent']:8.0f}  pruned {row['pruned']:8.0f}  rows {row['rows']:7.0f}  "
            f"depth {row['depth']:6.0f}",
            flush=True,
        )
        return row

    async def run(self) -> None:
        while True:  # cancelled by the caller
            await self.sample()
            await asyncio.sleep(self.interval)


async def push(
    http: aiohttp.ClientSession, url: str, args: argparse.Namespace
) -> tuple[int, int, float, float]:
    """POST `args.commands` messages at up to `args.rate`/s, round robin over the chats,
    holding back while more than `args.backlog` wait in the queue; return (202 answers, other
    answers, seconds, seconds held back)."""
    bodies = [enqueue_body(chat, f"soak {chat}") for chat in range(1, args.chats + 1)]
    counter = iter(range(args.commands))
    accepted = refused = 0
    held = 0.0
    start = time.monotonic()
    flowing = asyncio.Event()
    flowing.set()

    async def lane() -> None:
        nonlocal accepted, refused
        for i in counter:
            await flowing.wait()
            delay = start + held + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with http.post(
                f"{url}/enqueue_command", data=bodies[i % args.chats], headers=JSON_HEADERS
            ) as resp:
                await resp.read()
                if resp.status == 202:
                    accepted += 1
                else:
                    refused += 1

    async def backpressure() -> None:
        """The worker, not the client, sets the pace: a backlog would be kept (not final)."""
        nonlocal held
        while True:  # cancelled when the lanes are done
            depth = (await scrape_metrics(http, url)).get("gateway_queue_depth", 0.0)
            if depth > args.backlog:
                flowing.clear()
                held += BACKPRESSURE_POLL_SECONDS
            else:
                flowing.set()
            await asyncio.sleep(BACKPRESSURE_POLL_SECONDS)

    governor = asyncio.create_task(backpressure())
    try:
        await asyncio.gather(*(lane() for _ in range(args.concurrency)))
    finally:
        governor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await governor
    return accepted, refused, time.monotonic() - start, held


async def soak(gw: Service, http: aiohttp.ClientSession, db: Path, args: argparse.Namespace) -> Any:
    sampler = Sampler(gw, http, db, args.interval)
    sampling = asyncio.create_task(sampler.run())
    try:
        accepted, refused, push_seconds, held = await push(http, gw.url, args)
        push_end = time.monotonic() - sampler.start
        sampler.phase = "drain"
        deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
        while time.monotonic() < deadline:
            if (await scrape_metrics(http, gw.url)).get("gateway_queue_depth", 1.0) == 0:
                break
            await asyncio.sleep(1.0)
        drained = time.monotonic() - sampler.start
        sampler.phase = "tail"
        await asyncio.sleep(args.retention + TAIL_MARGIN_SECONDS)
        await sampler.sample()
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    return sampler.samples, accepted, refused, push_seconds, held, push_end, drained


def at(samples: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The first sample taken at or after `t` seconds (the last one if none)."""
    return next((s for s in samples if s["t"] >= t), samples[-1])


def summarise(samples: list[dict[str, Any]], retention: float, push_end: float) -> dict[str, Any]:
    """Start, one retention period in, end of the push, after the tail; the spread in between."""
    pushing = [s for s in samples if s["phase"] == "push"]
    one_period = at(samples, retention + TAIL_MARGIN_SECONDS)
    steady = [s for s in pushing if s["t"] >= one_period["t"]] or [one_period]
    end = pushing[-1] if pushing else samples[-1]

    def point(s: dict[str, Any]) -> dict[str, Any]:
        return {
            "t": s["t"],
            "db_mib": round(s["db_bytes"] / 2**20, 1),
            "rss_mib": round(s["rss_kib"] / 1024, 1),
            "rows": int(s["rows"]),
        }

    db_ratio = end["db_bytes"] / one_period["db_bytes"]
    rss_ratio = end["rss_kib"] / one_period["rss_kib"]
    return {
        "start": point(samples[0]),
        "after_one_retention_period": point(one_period),
        "end_of_push": point(end),
        "after_tail": point(samples[-1]),
        "steady_db_mib_min_max": [
            round(min(s["db_bytes"] for s in steady) / 2**20, 1),
            round(max(s["db_bytes"] for s in steady) / 2**20, 1),
        ],
        "steady_rss_mib_min_max": [
            round(min(s["rss_kib"] for s in steady) / 1024, 1),
            round(max(s["rss_kib"] for s in steady) / 1024, 1),
        ],
        "end_over_one_period": {"db": round(db_ratio, 3), "rss": round(rss_ratio, 3)},
        "target_ratio": 1.25,
        "met": db_ratio <= 1.25 and rss_ratio <= 1.25,
        "push_end_t": round(push_end, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        db = ws.root / "var" / "gateway.db"
        env = {
            "GATEWAY_QUEUE_RETENTION": f"{args.retention:g}",
            "GATEWAY_FLOOD_GLOBAL_PER_SECOND": str(LIFTED_GLOBAL),
            "GATEWAY_FLOOD_CHAT_PER_SECOND": str(LIFTED_CHAT),
        }
        limits = (float(LIFTED_GLOBAL), float(LIFTED_CHAT), LIFTED_GLOBAL)
        async with (
            plain_session() as control,
            sandbox_process(root, control, limits) as sandbox,
            https_session(ws, args.concurrency) as http,
        ):
            await create_chats(control, sandbox.url, range(1, args.chats + 1))
            async with gateway_process(ws, sandbox.url, http, env) as gw:
                samples, accepted, refused, seconds, held, push_end, drained = await soak(
                    gw, http, db, args
                )
                peak = rss_kib(gw.pid, "VmHWM")
    settings = {
        "commands": args.commands,
        "retention_seconds": args.retention,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "chats": args.chats,
        "interval": args.interval,
    }
    return {
        "settings": settings,
        "accepted": accepted,
        "refused": refused,
        "push_seconds": round(seconds, 1),
        "push_rps": round(accepted / seconds, 1),
        "held_back_seconds": round(held, 1),
        "drained_t": round(drained, 1),
        "peak_rss_kib": peak,
        "summary": summarise(samples, args.retention, push_end),
        "samples": samples,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--retention", type=float, default=60.0, help="seconds")
    parser.add_argument("--rate", type=float, default=400.0, help="most enqueues per second")
    parser.add_argument("--backlog", type=int, default=2000, help="hold back while more are queued")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(
        f"soak: {args.commands} commands at {args.rate:g}/s, retention {args.retention:g} s, "
        f"{args.chats} chats"
    )
    result = asyncio.run(run(args))
    path = write_result("soak", result)
    s = result["summary"]
    lines = [
        f"accepted {result['accepted']} ({result['refused']} refused) in "
        f"{result['push_seconds']} s = {result['push_rps']}/s; peak RSS "
        f"{result['peak_rss_kib'] / 1024:.1f} MiB"
    ]
    for name in ("start", "after_one_retention_period", "end_of_push", "after_tail"):
        p = s[name]
        lines.append(
            f"{name:27} t={p['t']:6.1f}s db+wal {p['db_mib']:7.1f} MiB  RSS {p['rss_mib']:6.1f} "
            f"MiB  rows {p['rows']}"
        )
    verdict = "met" if s["met"] else "NOT met"
    lines.append(
        f"end / one period: db {s['end_over_one_period']['db']}, RSS "
        f"{s['end_over_one_period']['rss']} (target <= {s['target_ratio']}: {verdict})\n-> {path}"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
