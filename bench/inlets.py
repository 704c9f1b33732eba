"""Inlets: Alertmanager notifications/s vs `/enqueue_command` requests/s, and a 1,000-alert storm.

One gateway (durable SQLite queue, `synchronous=FULL`, delivering to the sandbox at Telegram's
default limits in the background) with two Alertmanager inlets: `am` (chat 1001) and `storm`
(chat 1002, `batch_window_s = 600`). Rounds alternate: `/enqueue_command` (the enqueue bench's
bodies, to chats 1..100), then `POST /inlets/am` with an Alertmanager (version 4) payload of
10 alerts, its group one of 1,000, alternating between two variants (the first alert firing,
then resolved), so that every request changes a stored group (a read-modify-write, a version,
a showThread; the message is rendered when the worker sends it), same client, same
connections. Figures: the medians over
rounds, inlet / enqueue [target >= 0.8], the gateway's CPU time per request.

Then the storm: 1,000 single-alert notifications, each its own group, posted to `storm` as fast
as it takes them; reported: HTTP errors, messages in chat 1002, and the seconds from the first
POST until the sandbox shows the message listing all 1,000.

    .venv/bin/python bench/inlets.py [--rounds 5] [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from typing import Any

import aiohttp
from common import (
    JSON_HEADERS,
    chat_messages,
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
    temp_root,
    write_result,
)

CHATS = 100
GROUPS = 1000
STORM = 1000
TARGET = 0.8
SECRET = "bench-inlet-secret-0123456789"
MAX_REQUESTS_PER_ROUND = 1_000_000
MODES = ("enqueue", "inlet")
STORM_TIMEOUT_SECONDS = 300.0

CONFIG = """
[[inlets]]
name = "am"
kind = "alertmanager"
chats = [1001]
secret_file = "config/secrets/inlet_am.key"

[[inlets]]
name = "storm"
kind = "alertmanager"
chats = [1002]
secret_file = "config/secrets/inlet_am.key"
batch_window_s = 600
"""


def am_body(group: int, alerts: int, variant: int = 0) -> bytes:
    """An Alertmanager webhook payload (version 4) for group `group` with `alerts` alerts; in
    variant 1 the first alert has resolved (so alternating variants change the group)."""
    name = f"Bench{group}"
    items = [
        {
            "status": "resolved" if variant and i == 0 else "firing",
            "labels": {"alertname": name, "instance": f"host-{i}:9100", "job": "node"},
            "annotations": {"summary": f"{name} is high on host-{i}"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": f"{group:08x}{i:08x}",
        }
        for i in range(alerts)
    ]
    payload = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "telegram",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "job": "node"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": items,
    }
    return json.dumps(payload).encode()


async def load(
    http: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
) -> tuple[int, int, float]:
    """(2xx answers, errors, elapsed seconds) of one round."""
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline and n < MAX_REQUESTS_PER_ROUND:
            body = bodies[n % len(bodies)]
            n += concurrency
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    counts["ok" if resp.status in (200, 202) else "errors"] += 1
            except (aiohttp.ClientError, TimeoutError):
                counts["errors"] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return counts["ok"], counts["errors"], time.monotonic() - start


async def storm(
    http: aiohttp.ClientSession,
    control: aiohttp.ClientSession,
    gw_url: str,
    sandbox_url: str,
    headers: dict[str, str],
    concurrency: int,
) -> dict[str, Any]:
    bodies = [am_body(100_000 + n, 1) for n in range(STORM)]
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(body: bytes) -> None:
        nonlocal errors
        async with semaphore, http.post(f"{gw_url}/inlets/storm", data=body, headers=headers) as r:
            await r.read()
            errors += r.status != 202

    start = time.monotonic()
    await asyncio.gather(*(one(body) for body in bodies))
    accepted = time.monotonic() - start
    deadline = start + STORM_TIMEOUT_SECONDS
    messages: list[Any] = []
    while time.monotonic() < deadline:
        messages = await chat_messages(control, sandbox_url, 1002)
        if messages and f"{STORM} notifications" in (messages[-1].get("text") or ""):
            break
        await asyncio.sleep(0.1)
    last_edit = time.monotonic() - start
    return {
        "alerts": STORM,
        "http_errors": errors,
        "seconds_to_accept_all": round(accepted, 2),
        "seconds_to_last_edit": round(last_edit, 2),
        "messages_sent": len(messages),
        "complete": bool(messages) and f"{STORM} notifications" in (messages[-1].get("text") or ""),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    with temp_root() as root:
        ws = make_workspace(root / "ws")
        (ws.root / "config").mkdir(exist_ok=True)
        (ws.root / "config" / "gateway.toml").write_text(CONFIG)
        secret = ws.root / "config" / "secrets" / "inlet_am.key"
        secret.write_text(SECRET)
        secret.chmod(0o600)
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            http = await stack.enter_async_context(https_session(ws, args.concurrency))
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            await create_chats(control, sandbox.url, [*range(1, CHATS + 1), 1001, 1002])
            gw = await stack.enter_async_context(gateway_process(ws, sandbox.url, http))
            targets = {
                "enqueue": (
                    f"{gw.url}/enqueue_command",
                    [enqueue_body(chat) for chat in range(1, CHATS + 1)],
                    dict(JSON_HEADERS),
                ),
                "inlet": (
                    f"{gw.url}/inlets/am",
                    # Each group's requests alternate between its two variants: every request
                    # changes the group (a repeat would store nothing).
                    [am_body(group, 10, variant) for variant in (0, 1) for group in range(GROUPS)],
                    {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"},
                ),
            }
            for mode in MODES:
                url, bodies, headers = targets[mode]
                await load(http, url, bodies, headers, args.warmup, args.concurrency)
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpu_us: dict[str, list[float]] = {mode: [] for mode in MODES}
            errors = 0
            for index in range(args.rounds):
                for mode in MODES:
                    url, bodies, headers = targets[mode]
                    before = cpu_seconds(gw.pid)
                    ok, bad, elapsed = await load(
                        http, url, bodies, headers, args.seconds, args.concurrency
                    )
                    rates[mode].append(ok / elapsed)
                    cpu_us[mode].append(1e6 * (cpu_seconds(gw.pid) - before) / max(ok, 1))
                    errors += bad
                    print(f"  round {index + 1} {mode:<8} {ok / elapsed:8.0f} req/s", flush=True)
            storm_result = await storm(
                http, control, gw.url, sandbox.url, targets["inlet"][2], args.concurrency
            )
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    ratio = medians["inlet"] / medians["enqueue"]
    return {
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "alerts_per_payload": 10,
            "groups": GROUPS,
            "client": "aiohttp (this process)",
            "queue": "sqlite (synchronous=FULL)",
        },
        "enqueue_median_rps": round(medians["enqueue"], 1),
        "inlet_median_rps": round(medians["inlet"], 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET,
        "met": ratio >= TARGET,
        "gateway_cpu_us_per_request": {
            mode: round(statistics.median(values)) for mode, values in cpu_us.items()
        },
        "errors": errors,
        "rounds": {mode: [round(r, 1) for r in values] for mode, values in rates.items()},
        "storm": storm_result,
    }


def parse_args() -> argparse.Namespace:
    parser = load_parser(__doc__.splitlines()[0])
    return parse_load_args(parser)


def main() -> None:
    args = parse_args()
    print(f"inlets: {args.rounds} x {args.seconds:g}s per mode, {args.concurrency} conns")
    result = asyncio.run(run(args))
    path = write_result("inlets", result)
    print(
        f"enqueue {result['enqueue_median_rps']} req/s, inlet (10 alerts) "
        f"{result['inlet_median_rps']} req/s (medians); inlet/enqueue {result['ratio']} "
        f"(target >= {TARGET}: {'met' if result['met'] else 'NOT met'}); gateway CPU/request "
        f"{result['gateway_cpu_us_per_request']} us; errors {result['errors']}"
    )
    print(f"storm: {result['storm']}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
