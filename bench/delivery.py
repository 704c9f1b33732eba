"""Sustained delivery at Telegram's default limits: messages/s, 429s, per-chat order.

The sandbox enforces Telegram's limits (30 messages/s per bot, 1/s per chat, 20/min per group)
and the gateway runs with its defaults. 300 private chats are created, then 3,000 messages are
enqueued round robin (message i to chat i % 300, its text carrying the chat's sequence number)
as fast as the API takes them. The bench waits (bounded) until `/metrics` counts them all as
sent, then reports

- messages/s = 3000 / (last delivery - first 202), where the last delivery is the latest
  `updated_at` of the 3,000 commands (the gateway's clock when Telegram answered) and the
  first 202 is the client's clock when the first answer arrived; and that / 30 [target >= 0.97];
- the sandbox's 429 count [target 0] and the peak rates it observed;
- whether every chat got its 10 messages, each once, in order [target: all].

    .venv/bin/python bench/delivery.py [--chats 300] [--messages 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import itertools
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    JSON_HEADERS,
    Service,
    Workspace,
    bounded_gather,
    chat_messages,
    create_chats,
    enqueue_body,
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

TELEGRAM_RATE = 30.0
CONCURRENCY = 32
WAIT_LIMIT_SECONDS = 200.0
TEXT = re.compile(r"chat (\d+) seq (\d+)")


async def enqueue_all(
    http: aiohttp.ClientSession, url: str, chats: int, messages: int
) -> tuple[list[str], float]:
    """POST every message; return the command ids (in message order) and the first 202 time."""
    first_202: list[float] = []

    async def post(i: int) -> str:
        chat = i % chats + 1
        body = enqueue_body(chat, f"chat {chat} seq {i // chats}")
        async with http.post(f"{url}/enqueue_command", data=body, headers=JSON_HEADERS) as resp:
            answer = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"message {i}: {resp.status} {answer}")
            if not first_202:
                first_202.append(time.time())
            return str(answer["id"])

    ids = await bounded_gather([functools.partial(post, i) for i in range(messages)], CONCURRENCY)
    return ids, first_202[0]


async def wait_sent(http: aiohttp.ClientSession, url: str, total: int) -> float:
    """Poll /metrics until `total` commands are sent (or failed); return seconds waited."""
    start = time.monotonic()
    for _ in range(int(WAIT_LIMIT_SECONDS / 0.5)):
        counters = await scrape_metrics(http, url)
        done = counters.get("gateway_commands_sent_total", 0) + counters.get(
            "gateway_commands_failed_total", 0
        )
        if done >= total:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - start


async def last_delivery(http: aiohttp.ClientSession, url: str, ids: list[str]) -> dict[str, Any]:
    """The statuses of all commands and the latest `updated_at` of the sent ones."""

    async def fetch(command_id: str) -> dict[str, Any]:
        async with http.get(f"{url}/commands/{command_id}") as resp:
            data: dict[str, Any] = await resp.json()
            return data

    commands = await bounded_gather([functools.partial(fetch, c) for c in ids], CONCURRENCY)
    sent = [c for c in commands if c.get("status") == "sent"]
    return {
        "sent": len(sent),
        "not_sent": len(commands) - len(sent),
        "last_updated_at": max((c["updated_at"] for c in sent), default=None),
    }


def sequence_numbers(chat: int, messages: list[dict[str, Any]]) -> list[int]:
    """The sequence numbers of a chat's messages as delivered; -1 for a foreign text."""
    seqs = []
    for message in messages:
        match = TEXT.fullmatch(message.get("text", ""))
        seqs.append(int(match.group(2)) if match and int(match.group(1)) == chat else -1)
    return seqs


async def check_order(
    http: aiohttp.ClientSession, sandbox_url: str, chats: int, per_chat: int
) -> dict[str, Any]:
    """Fetch every chat's messages: count chats in order, and chats with all, each once."""
    lists = await bounded_gather(
        [functools.partial(chat_messages, http, sandbox_url, c) for c in range(1, chats + 1)], 16
    )
    ordered = complete = 0
    bad: list[int] = []
    for chat, messages in enumerate(lists, start=1):
        seqs = sequence_numbers(chat, messages)
        in_order = -1 not in seqs and all(a < b for a, b in itertools.pairwise(seqs))
        ordered += in_order
        complete += seqs == list(range(per_chat))
        if not in_order and len(bad) < 10:
            bad.append(chat)
    return {"chats_in_order": ordered, "chats_complete": complete, "out_of_order_chats": bad}


def iso(moment: float) -> str:
    """A Unix time as local ISO 8601 with milliseconds (the gateway log's clock)."""
    return dt.datetime.fromtimestamp(moment).isoformat(sep=" ", timespec="milliseconds")


def log_lines(log: Path, limit: int = 20) -> list[str]:
    """The last lines the gateway logged (at warning level: 429s, failures)."""
    return log.read_text(errors="replace").splitlines()[-limit:]


async def measure(
    args: argparse.Namespace, ws: Workspace, control: aiohttp.ClientSession, sandbox: Service
) -> dict[str, Any]:
    """Run the whole scenario against a started sandbox; return the figures."""
    await create_chats(control, sandbox.url, range(1, args.chats + 1))
    async with (
        https_session(ws, CONCURRENCY) as http,
        gateway_process(ws, sandbox.url, http) as gw,
    ):
        await sandbox_json(control, sandbox.url, "DELETE", "stats")
        ids, first_202 = await enqueue_all(http, gw.url, args.chats, args.messages)
        enqueue_seconds = time.time() - first_202
        print(f"  enqueued {len(ids)} in {enqueue_seconds:.1f}s; waiting for delivery", flush=True)
        waited = await wait_sent(http, gw.url, args.messages)
        delivery = await last_delivery(http, gw.url, ids)
        counters = await scrape_metrics(http, gw.url)
    warnings = log_lines(gw.log)
    stats = await sandbox_json(control, sandbox.url, "GET", "stats")
    order = await check_order(control, sandbox.url, args.chats, args.messages // args.chats)
    result = figures(args, first_202, enqueue_seconds, waited, delivery, counters, stats, order)
    return {**result, "first_202_at": iso(first_202), "gateway_log": warnings}


def figures(
    args: argparse.Namespace,
    first_202: float,
    enqueue_seconds: float,
    waited: float,
    delivery: dict[str, Any],
    counters: dict[str, float],
    stats: dict[str, Any],
    order: dict[str, Any],
) -> dict[str, Any]:
    """The JSON result."""
    last = delivery["last_updated_at"]
    span = (last - first_202) if last else None
    rate = args.messages / span if span and delivery["not_sent"] == 0 else None
    return {
        "settings": {"chats": args.chats, "messages": args.messages, "limits": "30/s, 1/s, 20/min"},
        "enqueue_seconds": round(enqueue_seconds, 2),
        "wait_seconds": round(waited, 1),
        "span_seconds": round(span, 2) if span else None,
        "messages_per_second": round(rate, 2) if rate else None,
        "fraction_of_30": round(rate / TELEGRAM_RATE, 3) if rate else None,
        "target_fraction": 0.97,
        "sent": delivery["sent"],
        "not_sent": delivery["not_sent"],
        "sandbox_429": stats["too_many_requests"],
        "sandbox_total_sends": stats["total_sends"],
        "max_global_per_second": stats["max_global_per_second"],
        "max_chat_per_second": stats["max_chat_per_second"],
        "gateway_429_total": counters.get("gateway_telegram_429_total", 0.0),
        # A labelled counter has no sample before its first increment.
        "gateway_retries_total": counters.get("gateway_retries_total", 0.0),
        **order,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Workspace, sandbox with Telegram's limits, gateway with its defaults."""
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        async with plain_session() as control, sandbox_process(root, control) as sandbox:
            return await measure(args, ws, control, sandbox)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--messages", type=int, default=3000)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"delivery: {args.messages} messages to {args.chats} chats at Telegram's limits")
    result = asyncio.run(run(args))
    path = write_result("delivery", result)
    print(
        f"{result['messages_per_second']} msg/s = {result['fraction_of_30']} of 30 (target "
        f">= 0.97); sent {result['sent']}/{args.messages}; sandbox 429s "
        f"{result['sandbox_429']}; peak {result['max_global_per_second']}/s global, "
        f"{result['max_chat_per_second']}/s per chat; chats in order "
        f"{result['chats_in_order']}/{args.chats}, complete {result['chats_complete']}\n-> {path}"
    )


if __name__ == "__main__":
    main()
