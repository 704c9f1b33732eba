"""Idempotency keys: `POST /enqueue_command` requests/s with a fresh key each vs without.

One gateway (durable SQLite queue, `synchronous=FULL`, delivering to the sandbox at 30/s in the
background), one aiohttp client with `--concurrency` keep-alive connections, the enqueue bench's
bodies (`{"chat_id": <1..100>, "text": "bench"}`). Rounds alternate: unkeyed, keyed (every
request carries an `Idempotency-Key` of its own, so each is looked up and then queued), unkeyed,
...; after a warm-up of each, the figures are the medians over rounds and keyed / unkeyed
[target >= 0.8], and the gateway's CPU time per answered request (utime + stime of all its
threads), which the machine's noise moves less. Both modes hit the same process, so the
background delivery costs both alike.

    .venv/bin/python bench/idempotency.py [--rounds 5] [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import time

import aiohttp
from common import (
    JSON_HEADERS,
    cpu_seconds,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    load_parser,
    make_workspace,
    parse_load_args,
    plain_session,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)

CHATS = 100
TARGET = 0.8
MAX_REQUESTS_PER_ROUND = 1_000_000
MODES = ("unkeyed", "keyed")


async def load(
    http: aiohttp.ClientSession, url: str, keyed: bool, seconds: float, concurrency: int
) -> tuple[int, int, float]:
    """(2xx answers, errors, elapsed seconds) of one round."""
    bodies = [enqueue_body(chat) for chat in range(1, CHATS + 1)]
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + seconds
    prefix = f"bench-{time.time_ns()}-"
    numbers = itertools.count()

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline and n < MAX_REQUESTS_PER_ROUND:
            body = bodies[n % len(bodies)]
            n += concurrency
            headers = dict(JSON_HEADERS)
            if keyed:
                headers["Idempotency-Key"] = f"{prefix}{next(numbers)}"
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    counts["ok" if resp.status == 202 else "errors"] += 1
            except (aiohttp.ClientError, TimeoutError):
                counts["errors"] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return counts["ok"], counts["errors"], time.monotonic() - start


async def run(args: argparse.Namespace) -> dict[str, object]:
    with temp_root() as root:
        ws = make_workspace(root / "ws")
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            http = await stack.enter_async_context(https_session(ws, args.concurrency))
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            await create_chats(control, sandbox.url, range(1, CHATS + 1))
            gw = await stack.enter_async_context(gateway_process(ws, sandbox.url, http))
            url = f"{gw.url}/enqueue_command"
            for mode in MODES:
                await load(http, url, mode == "keyed", args.warmup, args.concurrency)
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpu_us: dict[str, list[float]] = {mode: [] for mode in MODES}
            errors = 0
            for index in range(args.rounds):
                for mode in MODES:
                    before = cpu_seconds(gw.pid)
                    ok, bad, elapsed = await load(
                        http, url, mode == "keyed", args.seconds, args.concurrency
                    )
                    rates[mode].append(ok / elapsed)
                    cpu_us[mode].append(1e6 * (cpu_seconds(gw.pid) - before) / max(ok, 1))
                    errors += bad
                    print(f"  round {index + 1} {mode:<8} {ok / elapsed:8.0f} req/s", flush=True)
            counters = await scrape_metrics(http, gw.url)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    ratio = medians["keyed"] / medians["unkeyed"]
    pairs = [k / u for k, u in zip(rates["keyed"], rates["unkeyed"], strict=True)]
    return {
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "client": "aiohttp (this process)",
            "queue": "sqlite (synchronous=FULL)",
        },
        "unkeyed_median_rps": round(medians["unkeyed"], 1),
        "keyed_median_rps": round(medians["keyed"], 1),
        "ratio": round(ratio, 3),
        "ratio_median_of_pairs": round(statistics.median(pairs), 3),
        "target_ratio": TARGET,
        "met": ratio >= TARGET,
        "gateway_cpu_us_per_request": {
            mode: round(statistics.median(values)) for mode, values in cpu_us.items()
        },
        "errors": errors,
        "rounds": {mode: [round(r, 1) for r in values] for mode, values in rates.items()},
        "gateway_accepted_total": counters.get("gateway_commands_accepted_total"),
    }


def parse_args() -> argparse.Namespace:
    parser = load_parser(__doc__.splitlines()[0])
    return parse_load_args(parser)


def main() -> None:
    args = parse_args()
    print(f"idempotency: {args.rounds} x {args.seconds:g}s per mode, {args.concurrency} conns")
    result = asyncio.run(run(args))
    path = write_result("idempotency", result)
    print(
        f"unkeyed {result['unkeyed_median_rps']} req/s, keyed {result['keyed_median_rps']} req/s "
        f"(medians); keyed/unkeyed {result['ratio']} (target >= {TARGET}: "
        f"{'met' if result['met'] else 'NOT met'}); gateway CPU/request "
        f"{result['gateway_cpu_us_per_request']} us; errors {result['errors']}"
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
