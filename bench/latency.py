"""Enqueue -> sendMessage latency at light load.

300 messages are enqueued at a steady 10/s, round robin over 60 chats (each chat gets one
message every 6 s, so the 1/s per-chat limit never holds one back; 10/s is a third of the
30/s bot limit). For each message, latency = the command's `updated_at` (the gateway's wall
clock when the sandbox's answer to sendMessage came back, read with `GET /commands/{id}?wait=10`)
minus the client's wall clock just before the POST. Client and gateway run on one machine and
share the clock. The sandbox's message `date` has whole seconds only, so it is not used.

Reports p50 / p90 / p99 / max in ms [target p50 <= 10 ms], and the POST round trip (the 202).

    .venv/bin/python bench/latency.py [--messages 300] [--rate 10] [--chats 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from common import (
    JSON_HEADERS,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    make_workspace,
    percentile,
    plain_session,
    sandbox_json,
    sandbox_process,
    temp_root,
    write_result,
)

WARMUP_MESSAGES = 10
WAIT_SECONDS = 10


@dataclass(frozen=True)
class Sample:
    """One message's timings, in seconds."""

    status: str
    accept: float  # POST sent -> 202 received (client clock)
    delivered: float  # POST sent -> Telegram's answer (gateway clock, `updated_at`)


async def one(http: aiohttp.ClientSession, url: str, chat: int, text: str) -> Sample:
    """Enqueue one message and wait for its final status."""
    t0 = time.time()
    async with http.post(
        f"{url}/enqueue_command", data=enqueue_body(chat, text), headers=JSON_HEADERS
    ) as resp:
        answer = await resp.json()
    t_202 = time.time()
    if resp.status != 202:
        raise RuntimeError(f"enqueue: {resp.status} {answer}")
    params = {"wait": str(WAIT_SECONDS)}
    async with http.get(f"{url}/commands/{answer['id']}", params=params) as resp:
        command: dict[str, Any] = await resp.json()
    return Sample(command["status"], t_202 - t0, command["updated_at"] - t0)


async def paced(
    http: aiohttp.ClientSession, url: str, messages: int, rate: float, chats: int
) -> list[Sample]:
    """Start message i at i / rate seconds, to chat i % chats + 1; wait for all."""
    start = time.monotonic()

    async def scheduled(i: int) -> Sample:
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        return await one(http, url, i % chats + 1, f"latency {i}")

    return list(await asyncio.gather(*(scheduled(i) for i in range(messages))))


def summary(samples: list[Sample]) -> dict[str, Any]:
    """Percentiles in ms of the delivered messages."""
    sent = [s for s in samples if s.status == "sent"]
    delivered = [1000 * s.delivered for s in sent]
    accept = [1000 * s.accept for s in samples]
    return {
        "sent": len(sent),
        "not_sent": len(samples) - len(sent),
        "latency_ms": {
            "p50": round(percentile(delivered, 50), 2),
            "p90": round(percentile(delivered, 90), 2),
            "p99": round(percentile(delivered, 99), 2),
            "max": round(max(delivered), 2),
        },
        "accept_ms": {
            "p50": round(percentile(accept, 50), 2),
            "p99": round(percentile(accept, 99), 2),
        },
        "target_p50_ms": 10,
        "met": percentile(delivered, 50) <= 10,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Sandbox at Telegram's limits, gateway with its defaults, a warm-up, then the run."""
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        async with (
            plain_session() as control,
            sandbox_process(root, control) as sandbox,
            https_session(ws, 32) as http,
        ):
            await create_chats(control, sandbox.url, range(1, args.chats + 1))
            async with gateway_process(ws, sandbox.url, http) as gw:
                await paced(http, gw.url, WARMUP_MESSAGES, args.rate, args.chats)
                await asyncio.sleep(1.1)  # let the warm-up's per-chat windows pass
                samples = await paced(http, gw.url, args.messages, args.rate, args.chats)
            stats = await sandbox_json(control, sandbox.url, "GET", "stats")
    return {
        "settings": {"messages": args.messages, "rate": args.rate, "chats": args.chats},
        "clock": "gateway updated_at - client time.time() before POST",
        **summary(samples),
        "sandbox_429": stats["too_many_requests"],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--chats", type=int, default=60)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"latency: {args.messages} messages at {args.rate:g}/s over {args.chats} chats")
    result = asyncio.run(run(args))
    path = write_result("latency", result)
    lat = result["latency_ms"]
    print(
        f"enqueue -> sendMessage: p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, "
        f"max {lat['max']} ms (target p50 <= 10 ms: {'met' if result['met'] else 'NOT met'}); "
        f"202 p50 {result['accept_ms']['p50']} ms; sent {result['sent']}/{args.messages}"
        f"\n-> {path}"
    )


if __name__ == "__main__":
    main()
