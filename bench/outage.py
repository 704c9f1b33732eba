"""Messages accepted during a Telegram outage: how many fail [target 0 for outages < max_age].

The gateway (defaults: max_attempts 8, max_age 3600 s) talks to the sandbox (Telegram's limits)
through a TCP proxy on loopback. The proxy is taken down (connections refused, open ones cut),
400 messages to 100 chats are enqueued, the outage lasts `--outage` seconds (100), the proxy
comes back on the same port, and the bench waits (bounded) until every command is final. It
reports how many were sent and failed, the most attempts one command needed, and how long the
last delivery took after the outage ended.

    .venv/bin/python bench/outage.py [--messages 400] [--chats 100] [--outage 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from common import (
    JSON_HEADERS,
    REPO_ROOT,
    bounded_gather,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    make_workspace,
    plain_session,
    sandbox_process,
    temp_root,
    write_result,
)

sys.path.insert(0, str(REPO_ROOT))
from tests.tcp_proxy import TcpProxy  # the repository root is on the path now

CONCURRENCY = 16
WAIT_LIMIT_SECONDS = 400.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        async with plain_session() as control, sandbox_process(root, control) as sandbox:
            await create_chats(control, sandbox.url, range(1, args.chats + 1))
            target = urlsplit(sandbox.url)
            assert target.hostname and target.port
            proxy = TcpProxy(target.hostname, target.port)
            await proxy.start()
            env = {"GATEWAY_TELEGRAM_API_BASE": f"http://127.0.0.1:{proxy.port}"}
            try:
                async with (
                    https_session(ws, CONCURRENCY) as http,
                    gateway_process(ws, sandbox.url, http, env) as gw,
                ):
                    return await measure(args, http, gw.url, proxy)
            finally:
                await proxy.stop()


async def measure(
    args: argparse.Namespace, http: Any, url: str, proxy: TcpProxy
) -> dict[str, Any]:
    await proxy.stop()
    down_at = time.monotonic()

    async def post(i: int) -> str:
        chat = i % args.chats + 1
        body = enqueue_body(chat, f"chat {chat} seq {i // args.chats}")
        async with http.post(f"{url}/enqueue_command", data=body, headers=JSON_HEADERS) as resp:
            answer = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"message {i}: {resp.status} {answer}")
            return str(answer["id"])

    jobs = [functools.partial(post, i) for i in range(args.messages)]
    ids = await bounded_gather(jobs, CONCURRENCY)
    print(f"  {len(ids)} accepted; Telegram down for {args.outage:g}s", flush=True)
    await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - down_at)))
    await proxy.start()
    up_at = time.monotonic()
    print("  Telegram back; waiting for every command to be final", flush=True)

    async def fetch(command_id: str) -> dict[str, Any]:
        async with http.get(f"{url}/commands/{command_id}") as resp:
            data: dict[str, Any] = await resp.json()
            return data

    commands: list[dict[str, Any]] = []
    for _ in range(int(WAIT_LIMIT_SECONDS)):
        commands = await bounded_gather([functools.partial(fetch, i) for i in ids], CONCURRENCY)
        if all(c["status"] in ("sent", "failed") for c in commands):
            break
        await asyncio.sleep(1.0)
    settled = time.monotonic() - up_at
    statuses = [c["status"] for c in commands]
    return {
        "settings": {"messages": args.messages, "chats": args.chats, "outage_s": args.outage},
        "sent": statuses.count("sent"),
        "failed": statuses.count("failed"),
        "not_final": len(statuses) - statuses.count("sent") - statuses.count("failed"),
        "max_attempts_used": max(c["attempts"] for c in commands),
        "seconds_to_settle_after_outage": round(settled, 1),
        "failed_errors": [c["error"] for c in commands if c["status"] == "failed"][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--outage", type=float, default=100.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    path = write_result("outage", result)
    print(
        f"sent {result['sent']}, failed {result['failed']} (target 0), not final "
        f"{result['not_final']}; up to {result['max_attempts_used']} attempts; all final "
        f"{result['seconds_to_settle_after_outage']}s after the outage\n-> {path}"
    )


if __name__ == "__main__":
    main()
