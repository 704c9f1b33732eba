"""Files and a real gateway process: SIGKILL after the 202, and memory while receiving 50 MB.

The gateway runs as `python -m gateway run` (SQLite queue) against the in-process sandbox, as
in tests/test_crash.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from tests.conftest import BOT_ID, USER, Sandbox, Workspace
from tests.media_helpers import png
from tests.test_crash import gateway_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
MB = 1000 * 1000


@asynccontextmanager
async def client(workspace: Workspace) -> AsyncIterator[aiohttp.ClientSession]:
    cert = (workspace.root / "certs/certificate.pem").read_bytes()
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(cert))
    headers = {"Authorization": f"Bearer {workspace.token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        yield http


def form(payload: dict[str, Any], name: str, data: Any, filename: str) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("payload", json.dumps(payload), content_type="application/json")
    body.add_field(name, data, filename=filename, content_type="application/octet-stream")
    return body


async def status_of(http: aiohttp.ClientSession, base: str, command_id: str) -> dict[str, Any]:
    async with http.get(f"{base}/commands/{command_id}", params={"wait": "30"}) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def test_a_photo_accepted_before_sigkill_is_delivered_after_restart(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.create_chat(USER)
    # Telegram is down: the photo stays queued (retrying) when the gateway is killed.
    await sandbox.control(
        "POST", "faults", {"method": "sendPhoto", "kind": "server_error", "count": 1000}
    )
    image = png(1024, 768, salt=3, padding=200_000)
    base = f"https://{workspace.host}:8443"
    log = tmp_path / "gateway.log"
    async with client(workspace) as http:
        async with gateway_process(workspace, sandbox, http, log) as first:
            payload = {"chat_id": USER, "photo": "attach://p", "text": "camera 3"}
            async with http.post(
                f"{base}/enqueue_command", data=form(payload, "p", image, "cam.png")
            ) as resp:
                assert resp.status == 202, await resp.text()
                command_id = (await resp.json())["id"]
            first.send_signal(signal.SIGKILL)
            first.wait()
        await sandbox.control("DELETE", "faults")
        async with gateway_process(workspace, sandbox, http, log):
            command = await status_of(http, base, command_id)
    assert command["status"] == "sent", command
    [message] = await sandbox.messages(USER)
    file_id = message["media"][0]["file_id"]
    async with sandbox.http.get(
        f"{sandbox.url}/sandbox/files/{file_id}", params={"bot_id": str(BOT_ID)}
    ) as resp:
        assert await resp.read() == image
    assert message["caption"] == "camera 3"


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`total` bytes, generated as they are sent (the test holds no 50 MB buffer either)."""
    block = bytes(range(256)) * (size // 256)
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


async def test_a_50_mb_document_barely_moves_the_gateways_memory(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.create_chat(USER)
    base = f"https://{workspace.host}:8443"
    log = tmp_path / "gateway.log"
    total = 50 * MB - 64 * 1024  # under Telegram's 50 MB with room for the form's framing
    async with client(workspace) as http, gateway_process(workspace, sandbox, http, log) as proc:
        # Warm up: one small upload and delivery, so code paths and buffers exist already.
        payload = {"chat_id": USER, "document": "attach://d"}
        async with http.post(
            f"{base}/enqueue_command", data=form(payload, "d", b"warm-up", "w.txt")
        ) as resp:
            assert resp.status == 202
            await status_of(http, base, (await resp.json())["id"])
        before = memory_kb(proc.pid)
        async with http.post(
            f"{base}/enqueue_command", data=form(payload, "d", chunks(total), "big.bin")
        ) as resp:
            assert resp.status == 202, await resp.text()
            command_id = (await resp.json())["id"]
        received = memory_kb(proc.pid)
        command = await status_of(http, base, command_id)
        after = memory_kb(proc.pid)
    assert command["status"] == "sent", command
    assert command["result"]["document"]["file_size"] == total
    growth_kb = received["VmHWM"] - before["VmHWM"]
    print(f"RSS: before {before}, received {received}, delivered {after}")
    assert growth_kb < 10 * 1024, (before, received)
    assert after["VmHWM"] - before["VmHWM"] < 10 * 1024, (before, after)
    assert (
        os.path.getsize(
            next(p for p in (workspace.root / "var/media").iterdir() if p.stat().st_size == total)
        )
        == total
    )
