"""`gateway backup` under load, and the README's restore procedure into a fresh directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.certs import write_certificate
from gateway.clients import add_client
from gateway.errors import ConfigError
from gateway.ops.backup import backup_database
from tests.conftest import (
    TOKEN,
    USER,
    GatewayFactory,
    Sandbox,
    Workspace,
    free_loopback_address,
)
from tests.test_media import file_bytes, upload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def ids_in(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT id FROM commands")}
    finally:
        db.close()


async def test_backup_under_load_restores_every_command(
    gateway_factory: GatewayFactory, workspace: Workspace, tmp_path: Path
) -> None:
    accepted: list[str] = []
    copies: list[tuple[set[str], Path]] = []
    stop = asyncio.Event()
    async with gateway_factory() as gw:

        async def load(lane: int) -> None:
            n = 0
            while not stop.is_set() and n < 5000:  # bounded
                status, body = await gw.enqueue({"text": f"m{lane}-{n}", "chat_id": USER + lane})
                assert status == 202, body
                accepted.append(body["id"])
                n += 1

        writers = [asyncio.create_task(load(lane)) for lane in range(8)]
        try:
            while len(accepted) < 50:
                await asyncio.sleep(0.01)
            env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
            for name in ("one.db", "two.db"):
                before = set(accepted)
                # The documented command, as a separate process, while the writers write.
                done = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "gateway", "backup", str(tmp_path / name)],
                    cwd=workspace.root,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                assert "command(s)" in done.stdout
                copies.append((before, tmp_path / name))
            # Both copies were taken with the writers still writing.
            assert not any(writer.done() for writer in writers)
        finally:
            stop.set()
            await asyncio.gather(*writers)
    for before, copy in copies:
        assert copy.stat().st_mode & 0o777 == 0o600
        db = sqlite3.connect(copy)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        assert before <= ids_in(copy)  # everything answered 202 before the backup began
    assert len(ids_in(copies[1][1])) > len(ids_in(copies[0][1])) >= 50

    # Restore (README): a fresh directory, the copy as var/gateway.db, start, ask for each id.
    fresh = tmp_path / "restored"
    restored = Workspace(fresh, free_loopback_address())
    restored.write("config/secrets/bot_api.txt", TOKEN + "\n")
    restored.write("config/secrets/allowed_user.txt", f"{USER}\n")
    write_certificate(fresh / "certs", restored.host, 30)
    restored.token, _ = add_client(restored.clients_file, "tests")
    (fresh / "var").mkdir(mode=0o700)
    shutil.copy2(copies[1][1], fresh / "var/gateway.db")
    expected = ids_in(copies[1][1])
    workspace.root, workspace.host, workspace.token = fresh, restored.host, restored.token
    async with gateway_factory() as gw:
        assert gw.config.queue_path == fresh / "var/gateway.db"
        for command_id in expected:
            assert (await gw.command(command_id))["id"] == command_id


def test_backup_never_overwrites_and_names_a_missing_database(tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    target.write_text("precious")
    db = sqlite3.connect(tmp_path / "g.db")
    db.execute("CREATE TABLE commands (id TEXT)")
    db.close()
    with pytest.raises(ConfigError, match="already exists"):
        backup_database(tmp_path / "g.db", target)
    assert target.read_text() == "precious"
    with pytest.raises(ConfigError, match="no queue database"):
        backup_database(tmp_path / "missing.db", tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


async def test_backup_carries_the_files_of_queued_commands(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Documents queued to one chat (1 a second) are mostly undelivered when the backup runs:
    their files go into `<backup>.media`, and a gateway restored from the copy sends them."""
    documents = {f"d{n}": os.urandom(20_000 + n) for n in range(6)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    backup = tmp_path / "copy.db"
    await sandbox.create_chat(USER)
    async with gateway_factory() as gw:
        for name, data in documents.items():
            status, body = await upload(
                gw,
                {"chat_id": USER, "document": f"attach://{name}", "text": name},
                {name: (data, f"{name}.bin", "application/octet-stream")},
            )
            assert status == 202, body
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "backup", str(backup)],
            cwd=workspace.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    media = tmp_path / "copy.db.media"
    db = sqlite3.connect(backup)
    pending = {
        row[0]
        for row in db.execute("SELECT id FROM commands WHERE status IN ('queued', 'sending')")
    }
    db.close()
    assert pending, "every document was sent before the backup: nothing to carry"
    assert f"file(s) queued commands still need to {media}" in done.stdout
    copied = [p for p in media.iterdir() if not p.name.endswith(".refs")]
    assert len(copied) == len(pending)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in copied)
    assert media.stat().st_mode & 0o777 == 0o700

    # Restore into a fresh directory: the copy as var/gateway.db, the files into var/media.
    fresh = tmp_path / "restored"
    restored = Workspace(fresh, free_loopback_address())
    restored.write("config/secrets/bot_api.txt", TOKEN + "\n")
    restored.write("config/secrets/allowed_user.txt", f"{USER}\n")
    write_certificate(fresh / "certs", restored.host, 30)
    restored.token, _ = add_client(restored.clients_file, "tests")
    (fresh / "var").mkdir(mode=0o700)
    shutil.copy2(backup, fresh / "var/gateway.db")
    shutil.copytree(media, fresh / "var/media")
    workspace.root, workspace.host, workspace.token = fresh, restored.host, restored.token
    async with gateway_factory() as gw:
        for command_id in pending:
            command = await gw.command(command_id, wait=30)
            assert command["status"] == "sent", command
            document = command["result"]["document"]
            caption = command["result"]["caption"]
            assert await file_bytes(sandbox, document["file_id"]) == documents[caption]
