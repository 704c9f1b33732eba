"""Storage faults end to end: a real gateway (SQLite queue) on a file system that fills up or
fails, the sandbox as Telegram; and a second gateway on the same database.

The file systems are real: a 16 MiB tmpfs filled to the last block, an ext4 image on a loop
device made to fail (`trigger_fs_error` with errors=remount-ro). Mounting needs root, as CI has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import constants as c
from gateway.certs import client_ssl_context
from gateway.errors import StartupError
from gateway.sandbox import SandboxSettings
from gateway.server import serve
from tests.conftest import Gateway, GatewayFactory, Sandbox, Workspace
from tests.test_crash import gateway_env, gateway_process
from tests.test_queue_storage import fill, tmpfs

__all__ = ["tmpfs"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHATS = range(1, 11)
FAST = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "400", "GATEWAY_FLOOD_CHAT_PER_SECOND": "50"}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=400, chat_per_second=50)


def sqlite_env(path: Path) -> dict[str, str]:
    return {**FAST, "GATEWAY_QUEUE_BACKEND": "sqlite", "GATEWAY_QUEUE_PATH": str(path)}


async def post(gw: Gateway, n: int) -> tuple[int, dict[str, Any], str | None]:
    """Message `n` to its chat, with an idempotency key: (status, body, Retry-After)."""
    body = {"chat_id": CHATS[n % len(CHATS)], "text": f"m{n}"}
    headers = {**gw.auth, c.IDEMPOTENCY_HEADER: f"k{n}"}
    async with gw.http.post(f"{gw.url}{c.ENQUEUE_PATH}", json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def health(gw: Gateway) -> tuple[int, dict[str, Any]]:
    async with gw.http.get(gw.url + c.HEALTH_PATH) as resp:
        return resp.status, await resp.json()


def storage_log(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "gateway.queue.storage" and text in r.getMessage()
    ]


async def test_a_full_disk_is_503_and_heals_by_itself_sending_each_message_once(
    gateway_factory: GatewayFactory,
    sandbox: Sandbox,
    tmpfs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    for chat in CHATS:
        await sandbox.create_chat(chat)
    acked: dict[int, str] = {}
    refused: set[int] = set()
    answers_503 = 0
    async with gateway_factory(sqlite_env(tmpfs / "gateway.db")) as gw:

        async def send(numbers: range | list[int]) -> None:
            nonlocal answers_503
            for n in numbers:
                status, body, retry_after = await post(gw, n)
                if status in (200, 202):
                    acked[n] = body["id"]
                    refused.discard(n)
                else:
                    assert status == 503, body
                    assert body["error"]["code"] == "storage_unavailable"
                    assert "disk full" in body["error"]["message"]
                    assert retry_after == str(c.STORAGE_RETRY_AFTER_SECONDS)
                    refused.add(n)
                    answers_503 += 1

        await send(range(50))
        assert len(acked) == 50
        filler = fill(tmpfs)
        sent = 50
        # Keep sending (and the worker delivering) until the disk refuses some, and on a bit.
        while len(refused) < 20 and sent < 5000:
            await asyncio.gather(*(send(range(sent + i, sent + 100, 4)) for i in range(4)))
            sent += 100
        assert refused, "the full disk never refused a command"
        status, report = await health(gw)
        assert status == 503
        assert report["status"] == "unavailable"
        assert report["storage"] == "unavailable"
        assert "queue storage unavailable: disk full" in report["reasons"]

        filler.unlink()
        freed = time.monotonic()
        for _ in range(600):  # bounded: 30 s
            if (await health(gw))[0] == 200:
                break
            await asyncio.sleep(0.05)
        recovery = time.monotonic() - freed
        assert (await health(gw))[0] == 200, "did not recover once the disk had room"

        for _ in range(5):  # the client retries what was refused, with the same keys
            if refused:
                await send(sorted(refused))
        assert not refused
        statuses = Counter(
            [(await gw.command(command_id, wait=30))["status"] for command_id in acked.values()]
        )
    texts = Counter([m["text"] for chat in CHATS for m in await sandbox.messages(chat)])
    doubled = {text: count for text, count in texts.items() if count > 1}
    print(
        f"\ndisk full: {answers_503} answered 503, {len(acked)} acked, {statuses['sent']} sent, "
        f"{len(doubled)} duplicated, "
        f"recovered {recovery:.2f}s after the disk was freed; "
        f"{len(storage_log(caplog, 'released the storage reserve'))} reserve release(s); "
        f"{sum('cannot record its outcome' in r.getMessage() for r in caplog.records)} "
        "outcome(s) recorded late"
    )
    assert statuses == Counter({"sent": len(acked)})
    assert not doubled
    assert set(texts) == {f"m{n}" for n in acked}
    assert len(storage_log(caplog, "unavailable:")) == 1  # one WARNING, not one per request
    assert len(storage_log(caplog, "recovered after")) == 1
    assert not [r for r in caplog.records if r.exc_info]  # no traceback per request


@pytest.fixture
def failing_ext4(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """An ext4 file system on a loop device (errors=remount-ro), and its error trigger."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root (CI runs the tests as root)")
    image, mount = tmp_path / "fs.img", tmp_path / "ext4"
    mount.mkdir()
    with image.open("wb") as out:
        out.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)], check=True)
    try:
        device = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(mount)], capture_output=True, text=True
        ).stdout.strip()
        trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} missing: this kernel cannot make ext4 fail on demand")
        yield mount, trigger
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_file_system_gone_read_only_is_503_with_one_warning(
    gateway_factory: GatewayFactory,
    sandbox: Sandbox,
    failing_ext4: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mount, trigger = failing_ext4
    for chat in CHATS:
        await sandbox.create_chat(chat)
    async with gateway_factory(sqlite_env(mount / "gateway.db")) as gw:
        assert (await post(gw, 0))[0] == 202
        trigger.write_text("test: the disk failed\n")
        answers = [await post(gw, n) for n in range(1, 21)]
        assert {status for status, _, _ in answers} == {503}
        assert all(retry_after for _, _, retry_after in answers)
        reason = answers[0][1]["error"]["message"]
        status, report = await health(gw)
        assert status == 503
        assert report["storage"] == "unavailable"
        assert any(r.startswith("queue storage unavailable: ") for r in report["reasons"])
        assert any(("I/O error" in r or "read-only" in r) for r in report["reasons"]), reason
    assert len(storage_log(caplog, "unavailable:")) == 1
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("gateway.http")]


async def test_a_second_gateway_on_one_database_is_refused_and_the_first_carries_on(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    for chat in CHATS:
        await sandbox.create_chat(chat)
    cert = (workspace.root / "certs/certificate.pem").read_bytes()
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(cert))
    headers = {"Authorization": f"Bearer {workspace.token}"}
    base = f"https://{workspace.host}:8443"
    log = tmp_path / "first.log"
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def enqueue(n: int) -> str:
            body = {"chat_id": CHATS[n % len(CHATS)], "text": f"m{n}"}
            async with http.post(base + c.ENQUEUE_PATH, json=body) as resp:
                assert resp.status == 202, await resp.text()
                command_id: str = (await resp.json())["id"]
                return command_id

        acked: list[str] = []
        async with gateway_process(workspace, sandbox, http, log) as first:
            acked += await asyncio.gather(*(enqueue(n) for n in range(100)))
            # The second, as an operator would start it: one line, exit status 2.
            # (not subprocess.run: the sandbox it calls lives in this event loop)
            second = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "run",
                "--log-level",
                "warning",
                cwd=workspace.root,
                env=gateway_env(workspace, sandbox),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(60):
                _, stderr = await second.communicate()
            assert second.returncode == 2, stderr
            (line,) = stderr.decode().strip().splitlines()
            print(f"\nsecond instance: {line}")
            assert line.startswith("error: the queue database ")
            assert f"in use by gateway pid {first.pid} on " in line and " since " in line
            # ... and in-process, through serve() (the webhook and port are never reached).
            config = workspace.config(sandbox.url, gateway_env(workspace, sandbox))
            with pytest.raises(StartupError, match=f"pid {first.pid} "):
                async with serve(config):
                    pass
            acked += await asyncio.gather(*(enqueue(n) for n in range(100, 200)))
            for command_id in acked:
                async with http.get(f"{base}/commands/{command_id}", params={"wait": "30"}) as r:
                    assert (await r.json())["status"] == "sent"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=20)
        # The lock died with the first: a new gateway starts on the same database.
        async with gateway_process(workspace, sandbox, http, log):
            acked.append(await enqueue(200))
            async with http.get(f"{base}/commands/{acked[-1]}", params={"wait": "30"}) as r:
                assert (await r.json())["status"] == "sent"
    texts = Counter([m["text"] for chat in CHATS for m in await sandbox.messages(chat)])
    assert texts == Counter({f"m{n}": 1 for n in range(201)})  # nothing re-sent by the second
