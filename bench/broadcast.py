"""Broadcast at the paid-broadcast ceiling: 20,000 messages to 10,000 chats, and a bare client.

Each round starts a fresh sandbox and workspace and measures, side by side:

1. **bare**: a bare aiohttp client (64 connections, as many as the gateway's sends in flight)
   makes the same 20,000 `sendMessage` calls to 10,000 other chats of the same sandbox, its
   global limit lifted: calls/s, non-200 answers.
2. **gateway**: the 20,000 messages are enqueued (message i to chat i % 10,000 + 1, its text
   carrying the chat's sequence number) while the gateway's own limit holds delivery back
   (`[flood] global_per_second` = 0.001: one send); the gateway is restarted with the mode's
   limits and delivers the backlog. Reported: messages/s from the first to the last send the
   sandbox counted (polled every 50 ms), the gateway's CPU seconds per 1,000 sends, the
   sandbox's 429s, and whether every chat got its messages, each once, in order.

Modes (the sandbox keeps Telegram's 1/s per chat and 20/min per group in `paid` and `raised`):

- `paid` (default): Telegram's paid broadcast — the sandbox at 30/s free and 1,000/s with
  `allow_paid_broadcast` (`paid_per_second`), the gateway with `[flood] paid_broadcast = true`
  and `paid_per_second = 1000` (the flag only on sends above the free 30/s);
- `raised`: paid broadcast off, the sandbox's global limit and the
  gateway's `[flood] global_per_second` both at 1,000/s — the paid ceiling, without the flag;
- `lifted`: every limit lifted — the sandbox's and the gateway's global *and* per-chat limits at
  100,000/s — so the machine and the gateway's own engine bound the rate, not Telegram's rules
  (the issue's comparison: 10,000 messages to 2,000 chats with `--chats 2000 --messages
  10000`). The per-chat limit must be lifted too: at 1/s per chat, 2,000 chats cap any
  well-behaved sender at 2,000 msg/s, while the bare client (which ignores per-chat limits
  and is answered 429 by the sandbox) is not capped.

Medians over `--rounds`; the load average next to every figure.

    .venv/bin/python bench/broadcast.py [--mode paid|raised|lifted] [--rounds 3]
        [--chats 10000] [--messages 20000] [--profile DIR]  (py-spy on the delivery phase)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import common
from common import (
    Service,
    Workspace,
    cpu_seconds,
    create_chats,
    gateway_process,
    https_session,
    make_workspace,
    plain_session,
    sandbox_json,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)
from delivery import check_order, enqueue_all

#: A gateway starting on a backlog of 20,000 delivers at full speed at once; on a loaded
#: machine its /healthz may take longer than the default 30 s to answer the first time.
common.STARTUP_TIMEOUT_SECONDS = 120.0

#: Mode → (the sandbox's limits, the gateway's [flood] settings).
MODES: dict[str, tuple[dict[str, float], dict[str, str]]] = {
    "paid": (
        {"global_per_second": 30, "chat_per_second": 1.0, "paid_per_second": 1000},
        {"GATEWAY_FLOOD_PAID_BROADCAST": "true", "GATEWAY_FLOOD_PAID_PER_SECOND": "1000"},
    ),
    "raised": (
        {"global_per_second": 1000, "chat_per_second": 1.0, "paid_per_second": 0},
        {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "1000"},
    ),
    "lifted": (
        {"global_per_second": 100000, "chat_per_second": 100000, "paid_per_second": 0},
        {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "100000", "GATEWAY_FLOOD_CHAT_PER_SECOND": "100000"},
    ),
}
TARGET_RATE = 1000.0
BARE_CONNECTIONS = 64  # the gateway's MAX_IN_FLIGHT
BARE_CHAT_BASE = 1_000_000
HELD_BACK_RATE = 0.001  # one send per 1,000 s: the queue fills, nothing (but one) goes out
POLL_SECONDS = 0.05
WAIT_LIMIT_SECONDS = 600.0


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def set_limits(
    control: aiohttp.ClientSession, sandbox: Service, limits: dict[str, float]
) -> None:
    """`PUT /sandbox/limits`."""
    async with control.put(f"{sandbox.url}/sandbox/limits", json=limits) as r:
        if r.status != 200:
            raise RuntimeError(f"PUT /sandbox/limits: {r.status} {await r.text()}")


async def bare(sandbox: Service, ws: Workspace, chats: int, messages: int) -> dict[str, Any]:
    """The same sendMessage calls from a bare aiohttp client: calls/s and answers by status."""
    url = f"{sandbox.url}/bot{ws.token}/sendMessage"
    statuses: Counter[int] = Counter()
    cursor = iter(range(messages))
    connector = aiohttp.TCPConnector(limit=BARE_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def lane() -> None:
            for i in cursor:
                body = {"chat_id": BARE_CHAT_BASE + i % chats + 1, "text": f"bare {i}"}
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        start = time.monotonic()
        await asyncio.gather(*(lane() for _ in range(BARE_CONNECTIONS)))
        elapsed = time.monotonic() - start
    return {
        "per_second": round(messages / elapsed, 1),
        "seconds": round(elapsed, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def watch_sends(
    control: aiohttp.ClientSession, sandbox: Service, expected: int
) -> tuple[float, int, float]:
    """Poll the sandbox's send count: (time of the first count > 0, that count, time of the
    count reaching `expected`)."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    for _ in itertools.count():
        stats = await sandbox_json(control, sandbox.url, "GET", "stats")
        now = time.monotonic()
        sends = int(stats["total_sends"])
        if first is None and sends > 0:
            first = (now, sends)
        if sends >= expected:
            assert first is not None
            return first[0], first[1], now
        if now > deadline:
            raise RuntimeError(f"only {sends}/{expected} sends after {WAIT_LIMIT_SECONDS:g}s")
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError("unreachable")


async def gateway_round(
    args: argparse.Namespace,
    ws: Workspace,
    control: aiohttp.ClientSession,
    sandbox: Service,
    round_no: int,
) -> dict[str, Any]:
    """Enqueue with delivery held back, then restart the gateway and time the backlog."""
    sandbox_limits, gateway_flood = MODES[args.mode]
    held = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": str(HELD_BACK_RATE)}
    await sandbox_json(control, sandbox.url, "DELETE", "stats")  # the bare client's sends
    async with (
        https_session(ws, 32) as http,
        gateway_process(ws, sandbox.url, http, held) as gw,
    ):
        ids, _ = await enqueue_all(http, gw.url, args.chats, args.messages)
    before = await sandbox_json(control, sandbox.url, "GET", "stats")
    expected = args.messages - int(before["total_sends"])
    await sandbox_json(control, sandbox.url, "DELETE", "stats")
    await set_limits(control, sandbox, sandbox_limits)
    flood = gateway_flood
    async with (
        https_session(ws, 32) as http,
        gateway_process(ws, sandbox.url, http, flood) as gw,
    ):
        spy = profiler(args, gw, round_no)
        cpu_start = cpu_seconds(gw.proc.pid)
        first_at, first_count, last_at = await watch_sends(control, sandbox, expected)
        cpu = cpu_seconds(gw.proc.pid) - cpu_start
        if spy is not None:  # py-spy writes its profile on SIGINT
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        load = loadavg()
        for _ in range(int(WAIT_LIMIT_SECONDS / POLL_SECONDS)):  # the statuses recorded
            counters = await scrape_metrics(http, gw.url)
            if counters.get("gateway_commands_sent_total", 0) >= expected:
                break
            await asyncio.sleep(POLL_SECONDS)
    stats = await sandbox_json(control, sandbox.url, "GET", "stats")
    order = await check_order(control, sandbox.url, args.chats, args.messages // args.chats)
    span = last_at - first_at
    rate = (expected - first_count) / span if span > 0 else None
    return {
        "enqueued": len(ids),
        "delivered_in_phase": expected,
        "span_seconds": round(span, 2),
        "per_second": round(rate, 1) if rate else None,
        "gateway_cpu_ms_per_1000_sends": round(cpu / expected * 1e6, 1),
        "commands_sent_metric": counters.get("gateway_commands_sent_total", 0),
        "commands_failed_metric": counters.get("gateway_commands_failed_total", 0),
        "sandbox_429": stats["too_many_requests"],
        "sandbox_paid_sends": stats.get("paid_sends", 0),
        "max_global_per_second": stats["max_global_per_second"],
        "max_chat_per_second": stats["max_chat_per_second"],
        "loadavg": load,
        **order,
    }


def profiler(
    args: argparse.Namespace, gw: Service, round_no: int
) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the gateway (`--profile`), or None."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"{args.mode}-round{round_no}.txt"
    spy = str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "-p", str(gw.proc.pid), "-r", "100", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one_round(args: argparse.Namespace, round_no: int) -> dict[str, Any]:
    """A fresh sandbox and workspace: the bare client, then the gateway."""
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        limits = (MODES["lifted"][0]["global_per_second"], 1.0, 20)
        async with plain_session() as control, sandbox_process(root, control, limits) as sandbox:
            await create_chats(control, sandbox.url, range(1, args.chats + 1))
            bare_chats = range(BARE_CHAT_BASE + 1, BARE_CHAT_BASE + args.chats + 1)
            await create_chats(control, sandbox.url, bare_chats)
            await set_limits(control, sandbox, MODES["lifted"][0])  # paid broadcast off
            load = loadavg()
            bare_result = {**await bare(sandbox, ws, args.chats, args.messages), "loadavg": load}
            gateway = await gateway_round(args, ws, control, sandbox, round_no)
    ratio = gateway["per_second"] / bare_result["per_second"] if gateway["per_second"] else None
    return {"bare": bare_result, "gateway": gateway, "ratio": round(ratio, 3) if ratio else None}


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    for n in range(1, args.rounds + 1):
        result = await one_round(args, n)
        g, b = result["gateway"], result["bare"]
        print(
            f"  round {n}: gateway {g['per_second']}/s ({g['gateway_cpu_ms_per_1000_sends']} "
            f"CPU ms/1000), bare {b['per_second']}/s, ratio {result['ratio']}; 429s "
            f"{g['sandbox_429']}; chats in order {g['chats_in_order']}/{args.chats}, complete "
            f"{g['chats_complete']}; load {g['loadavg']}",
            flush=True,
        )
        rounds.append(result)
    gateway_rate = median([r["gateway"]["per_second"] for r in rounds])
    bare_rate = median([r["bare"]["per_second"] for r in rounds])
    return {
        "settings": {
            "mode": args.mode,
            "sandbox_limits": MODES[args.mode][0],
            "gateway_flood": MODES[args.mode][1],
            "chats": args.chats,
            "messages": args.messages,
            "rounds": args.rounds,
        },
        "median_gateway_per_second": gateway_rate,
        "median_bare_per_second": bare_rate,
        "ratio_of_medians": round(gateway_rate / bare_rate, 3)
        if gateway_rate and bare_rate
        else None,
        "fraction_of_1000": round(gateway_rate / TARGET_RATE, 3) if gateway_rate else None,
        "median_cpu_ms_per_1000_sends": median(
            [r["gateway"]["gateway_cpu_ms_per_1000_sends"] for r in rounds]
        ),
        "total_429": sum(r["gateway"]["sandbox_429"] for r in rounds),
        "all_in_order": all(r["gateway"]["chats_complete"] == args.chats for r in rounds),
        "rounds": rounds,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="paid")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chats", type=int, default=10000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--profile", help="a directory for py-spy's raw profiles")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"broadcast ({args.mode}): {args.messages} messages to {args.chats} chats")
    result = asyncio.run(run(args))
    path = write_result(f"broadcast-{args.mode}", result)
    print(
        f"gateway {result['median_gateway_per_second']}/s = {result['fraction_of_1000']} of "
        f"1000; bare {result['median_bare_per_second']}/s; ratio {result['ratio_of_medians']}; "
        f"CPU {result['median_cpu_ms_per_1000_sends']} ms/1000 sends; 429s "
        f"{result['total_429']}; every chat complete and in order: {result['all_in_order']}"
        f"\n-> {path}"
    )


if __name__ == "__main__":
    main()
