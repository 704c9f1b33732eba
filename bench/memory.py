"""Gateway memory: resident set size at idle and with 100,000 commands queued.

The gateway (SQLite queue) runs against a sandbox at Telegram's limits with 1,000 private
chats. Idle RSS is sampled (VmRSS from /proc/<pid>/status) several times after start-up and a
few warm-up requests, and the median is taken. Then 100,000 messages are enqueued through the
HTTP API (round robin over the chats, `--concurrency` connections); since the worker may only
deliver 30/s, nearly all of them stay queued. The queue depth is read from `/metrics`
(`gateway_queue_depth`) when RSS is sampled again [target: loaded <= 1.5 x idle]. The peak
(VmHWM) and how long the enqueuing took are reported too.

    .venv/bin/python bench/memory.py [--commands 100000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from typing import Any

import aiohttp
from common import (
    JSON_HEADERS,
    Service,
    bounded_gather,
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

CHATS = 1000
WARMUP_REQUESTS = 50
SAMPLES = 5
SAMPLE_INTERVAL_SECONDS = 0.5


async def rss_median(pid: int) -> int:
    """Median of a few VmRSS samples, in KiB."""
    values = []
    for _ in range(SAMPLES):
        values.append(rss_kib(pid))
        await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)
    return int(statistics.median(values))


async def enqueue_many(
    http: aiohttp.ClientSession, url: str, count: int, concurrency: int
) -> tuple[int, float]:
    """POST `count` messages round robin over the chats; return (202 answers, seconds)."""
    bodies = [enqueue_body(chat, "memory bench") for chat in range(1, CHATS + 1)]
    accepted = 0

    async def post(i: int) -> None:
        nonlocal accepted
        body = bodies[i % CHATS]
        async with http.post(f"{url}/enqueue_command", data=body, headers=JSON_HEADERS) as r:
            await r.read()
            accepted += r.status == 202

    start = time.monotonic()
    await bounded_gather([functools.partial(post, i) for i in range(count)], concurrency)
    return accepted, time.monotonic() - start


async def measure(
    gw: Service, http: aiohttp.ClientSession, args: argparse.Namespace
) -> dict[str, Any]:
    """Idle RSS, enqueue, loaded RSS."""
    await enqueue_many(http, gw.url, WARMUP_REQUESTS, 8)
    await asyncio.sleep(2.0)  # the warm-up is delivered (50 messages at 30/s)
    idle = await rss_median(gw.pid)
    print(f"  idle RSS {idle / 1024:.1f} MiB; enqueuing {args.commands}", flush=True)
    accepted, seconds = await enqueue_many(http, gw.url, args.commands, args.concurrency)
    loaded = await rss_median(gw.pid)
    depth = (await scrape_metrics(http, gw.url)).get("gateway_queue_depth")
    return {
        "idle_rss_kib": idle,
        "loaded_rss_kib": loaded,
        "peak_rss_kib": rss_kib(gw.pid, "VmHWM"),
        "ratio": round(loaded / idle, 3),
        "target_ratio": 1.5,
        "met": loaded / idle <= 1.5,
        "queue_depth": depth,
        "accepted": accepted,
        "enqueue_seconds": round(seconds, 1),
        "enqueue_rps": round(accepted / seconds, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sandbox at Telegram's limits, gateway with its defaults."""
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        async with (
            plain_session() as control,
            sandbox_process(root, control) as sandbox,
            https_session(ws, args.concurrency) as http,
        ):
            await create_chats(control, sandbox.url, range(1, CHATS + 1))
            async with gateway_process(ws, sandbox.url, http) as gw:
                result = await measure(gw, http, args)
            db_bytes = sum(p.stat().st_size for p in (ws.root / "var").glob("gateway.db*"))
    settings = {"commands": args.commands, "concurrency": args.concurrency, "chats": CHATS}
    return {"settings": settings, **result, "database_bytes": db_bytes}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"memory: gateway RSS idle and with {args.commands} commands queued")
    result = asyncio.run(run(args))
    path = write_result("memory", result)
    print(
        f"RSS idle {result['idle_rss_kib'] / 1024:.1f} MiB, loaded "
        f"{result['loaded_rss_kib'] / 1024:.1f} MiB (depth {result['queue_depth']:.0f}), ratio "
        f"{result['ratio']} (target <= 1.5: {'met' if result['met'] else 'NOT met'}); peak "
        f"{result['peak_rss_kib'] / 1024:.1f} MiB; enqueued {result['accepted']} in "
        f"{result['enqueue_seconds']}s\n-> {path}"
    )


if __name__ == "__main__":
    main()
