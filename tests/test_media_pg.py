"""Files on the PostgreSQL backend, with real gateway processes (as in tests/test_cluster.py).

- a file accepted by a follower is sent by the leader, and the file_id Telegram returned is
  reused by whichever replica leads next (it is in the shared database, not on a disk);
- SIGKILL after the 202 → the file is sent after the restart, bytes identical;
- receiving and sending a 50 MB document barely moves the gateway's memory;
- in process: an album of two uploads, and a refused (413) upload leaving no rows behind.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.certs import client_ssl_context
from gateway.sandbox import SandboxSettings
from tests.conftest import BOT_ID, USER, GatewayFactory, Sandbox, Workspace
from tests.media_helpers import png
from tests.test_cluster import Replica, health, make_replica, started, wait_for_leader
from tests.test_media import file_bytes, upload
from tests.test_media_process import chunks, memory_kb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
MB = 1000 * 1000


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=200, chat_per_second=50)


@asynccontextmanager
async def client(replica: Replica, token: str) -> AsyncIterator[aiohttp.ClientSession]:
    cert = (replica.root / "certs/certificate.pem").read_bytes()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_ssl_context(cert)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=120),
    ) as http:
        yield http


def form(name: str, data: Any, filename: str, payload: dict[str, Any]) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("payload", json.dumps(payload), content_type="application/json")
    body.add_field(name, data, filename=filename, content_type="application/octet-stream")
    return body


async def send_document(
    http: aiohttp.ClientSession, replica: Replica, data: Any, caption: str
) -> str:
    payload = {"chat_id": USER, "document": "attach://d", "text": caption}
    if isinstance(data, bytes):
        data = io.BytesIO(data)  # (aiohttp warns about large raw bytes bodies)
    url = f"{replica.base}/enqueue_command"
    async with http.post(url, data=form("d", data, "report.bin", payload)) as resp:
        assert resp.status == 202, await resp.text()
        command_id: str = (await resp.json())["id"]
        return command_id


async def final(http: aiohttp.ClientSession, replica: Replica, command_id: str) -> dict[str, Any]:
    url = f"{replica.base}/commands/{command_id}"
    for _ in range(4):  # a status wait is at most 30 s; a takeover may need one more round
        async with http.get(url, params={"wait": "30"}) as resp:
            assert resp.status == 200, await resp.text()
            command: dict[str, Any] = await resp.json()
        if command["status"] not in ("queued", "sending"):
            return command
    return command


async def sent_bytes(sandbox: Sandbox, message: dict[str, Any]) -> bytes:
    url = f"{sandbox.url}/sandbox/files/{message['media'][0]['file_id']}"
    async with sandbox.http.get(url, params={"bot_id": str(BOT_ID)}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def reused(http: aiohttp.ClientSession, replica: Replica) -> float:
    async with http.get(f"{replica.base}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("gateway_media_reused_total "):
            return float(line.split()[1])
    return 0.0


def no_media_on_disk(replica: Replica) -> bool:
    media = replica.root / "var/media"
    return not media.exists() or not any(media.iterdir())


async def rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_a_file_accepted_by_a_follower_is_sent_by_the_leader(
    workspace: Workspace, sandbox: Sandbox, pg_dsn: str
) -> None:
    await sandbox.create_chat(USER)
    data = bytes(range(256)) * (3 * MB // 256)  # over 1 MB: streamed from the database
    async with AsyncExitStack() as stack:
        leader = make_replica(workspace, "r0", [])
        http_b = await stack.enter_async_context(client(leader, workspace.token))
        await stack.enter_async_context(started(leader, sandbox, pg_dsn, http_b))
        assert await wait_for_leader({"r0": http_b}, [leader]) is leader
        follower = make_replica(workspace, "r1", [leader.host])
        http_a = await stack.enter_async_context(client(follower, workspace.token))
        await stack.enter_async_context(started(follower, sandbox, pg_dsn, http_a))
        view = await health(http_a, follower)
        assert view is not None and view["role"] == "follower", view

        first = await send_document(http_a, follower, data, "first")
        assert (await final(http_a, follower, first))["status"] == "sent"
        second = await send_document(http_a, follower, data, "second")
        assert (await final(http_a, follower, second))["status"] == "sent"
        assert await reused(http_b, leader) == 1.0  # the leader uploaded once
        assert await reused(http_a, follower) == 0.0

        # The leader dies; the follower takes over and reuses the file_id the old leader
        # recorded in the database (it never uploaded these bytes itself).
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        assert await wait_for_leader({"r1": http_a}, [follower]) is follower
        third = await send_document(http_a, follower, data, "third")
        assert (await final(http_a, follower, third))["status"] == "sent"
        assert await reused(http_a, follower) == 1.0

    messages = await sandbox.messages(USER)
    assert [m["caption"] for m in messages] == ["first", "second", "third"]
    assert await sent_bytes(sandbox, messages[0]) == data
    assert len({m["media"][0]["file_id"] for m in messages}) == 1
    files = await sandbox.control("GET", f"files?bot_id={BOT_ID}")
    assert files["uploads"] == 1
    assert no_media_on_disk(leader) and no_media_on_disk(follower)
    [file] = await rows(pg_dsn, "SELECT size FROM media_files")
    assert file["size"] == len(data)
    assert len(await rows(pg_dsn, "SELECT command_id FROM media_links")) == 3


async def test_a_file_accepted_before_sigkill_is_sent_after_restart(
    workspace: Workspace, sandbox: Sandbox, pg_dsn: str
) -> None:
    await sandbox.create_chat(USER)
    # Telegram is down: the document stays queued (retrying) when the gateway is killed.
    await sandbox.control(
        "POST", "faults", {"method": "sendDocument", "kind": "server_error", "count": 1000}
    )
    data = bytes(reversed(range(256))) * (2 * MB // 256) + b"tail"
    replica = make_replica(workspace, "r0", [])
    async with client(replica, workspace.token) as http:
        async with started(replica, sandbox, pg_dsn, http):
            command_id = await send_document(http, replica, data, "nightly report")
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGKILL)
            replica.proc.wait(timeout=10)
        await sandbox.control("DELETE", "faults")
        async with started(replica, sandbox, pg_dsn, http):
            command = await final(http, replica, command_id)
    assert command["status"] == "sent", command
    [message] = await sandbox.messages(USER)
    assert message["caption"] == "nightly report"
    assert await sent_bytes(sandbox, message) == data
    assert no_media_on_disk(replica)


async def test_a_50_mb_document_on_postgres_barely_moves_the_gateways_memory(
    workspace: Workspace, sandbox: Sandbox, pg_dsn: str
) -> None:
    await sandbox.create_chat(USER)
    total = 50 * MB - 64 * 1024  # under Telegram's 50 MB with room for the form's framing
    replica = make_replica(workspace, "r0", [])
    async with client(replica, workspace.token) as http, started(replica, sandbox, pg_dsn, http):
        assert replica.proc is not None
        pid = replica.proc.pid
        # Warm up: one small upload and delivery, so code paths and buffers exist already.
        warm = await send_document(http, replica, b"warm-up", "warm")
        assert (await final(http, replica, warm))["status"] == "sent"
        await asyncio.sleep(0)
        before = memory_kb(pid)
        command_id = await send_document(http, replica, chunks(total), "big")
        received = memory_kb(pid)
        command = await final(http, replica, command_id)
        after = memory_kb(pid)
    assert command["status"] == "sent", command
    assert command["result"]["document"]["file_size"] == total
    print(f"RSS on PostgreSQL: before {before}, received {received}, delivered {after}")
    assert received["VmHWM"] - before["VmHWM"] < 10 * 1024, (before, received)
    assert after["VmHWM"] - before["VmHWM"] < 10 * 1024, (before, after)
    sizes = await rows(pg_dsn, "SELECT size FROM media_files ORDER BY size")
    assert [r["size"] for r in sizes] == [len(b"warm-up"), total]
    [count] = await rows(pg_dsn, "SELECT count(*) AS n FROM media_chunks")
    assert count["n"] == 1 + -(-total // (1024 * 1024))
    assert no_media_on_disk(replica)


async def test_an_album_on_postgres_and_a_refused_upload_leaves_no_rows(
    gateway_factory: GatewayFactory, sandbox: Sandbox, pg_dsn: str
) -> None:
    await sandbox.create_chat(USER)
    first, second = png(640, 480, salt=1, padding=1_500_000), png(320, 240, salt=2)
    env = {
        "GATEWAY_QUEUE_BACKEND": "postgres",
        "GATEWAY_QUEUE_DSN": pg_dsn,
        "GATEWAY_MEDIA_MAX_UPLOAD_BYTES": str(3 * MB),
    }
    async with gateway_factory(env) as gw:
        status, answer = await upload(
            gw,
            {
                "chat_id": USER,
                "text": "before / after",
                "media": [
                    {"type": "photo", "media": "attach://a"},
                    {"type": "photo", "media": "attach://b"},
                ],
            },
            {"a": (io.BytesIO(first), "a.png", "image/png"), "b": (second, "b.png", "image/png")},
        )
        assert status == 202, answer
        command = await gw.command(answer["id"], wait=20)
        assert command["status"] == "sent", command
        status, answer = await upload(
            gw,
            {"chat_id": USER, "document": "attach://d"},
            {"d": (io.BytesIO(b"x" * (3 * MB + 1)), "big.bin", "application/octet-stream")},
        )
        assert status == 413 and "max_upload_bytes" in answer["error"]["message"], answer
    messages = await sandbox.messages(USER)
    assert [m.get("caption") for m in messages] == ["before / after", None]
    assert await file_bytes(sandbox, messages[0]["media"][0]["file_id"]) == first
    assert await file_bytes(sandbox, messages[1]["media"][0]["file_id"]) == second
    # The refused upload's chunks were deleted (the gateway waited for it as it stopped).
    assert [
        r["blob"]
        for r in await rows(pg_dsn, "SELECT DISTINCT blob FROM media_chunks ORDER BY blob")
    ] == [r["blob"] for r in await rows(pg_dsn, "SELECT blob FROM media_files ORDER BY blob")]
