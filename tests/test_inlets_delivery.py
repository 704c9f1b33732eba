"""An inlet message's delivery when things go wrong: the message was deleted in the chat, the
storage refused to record what Telegram shows; and inlet commands in the gateway's metrics."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.configvalues import read_toml
from gateway.delivery import RetryBudget, Worker
from gateway.errors import StorageError
from gateway.flood import FloodController
from gateway.inlets.config import parse_inlets
from gateway.inlets.service import Inlets
from gateway.inlets.show import ThreadShower
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.queue.memory import MemoryQueue
from gateway.sandbox import SandboxSettings
from gateway.telegram import create_bot
from tests.conftest import TOKEN, GatewayFactory, Sandbox, Workspace
from tests.inlet_helpers import SECRET, bearer, eventually, inlet_toml, post
from tests.test_inlets import GROUP, am_payload, start, texts


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=100000)


async def test_an_edit_of_a_deleted_message_becomes_a_new_message(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    toml = inlet_toml("prod", "alertmanager", [GROUP])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, _ = await post(gw, "prod", am_payload("Disk", ("a", "firing")), bearer())
        assert code == 202
        [first] = await eventually(lambda: texts(sandbox), lambda found: len(found) == 1)
        # Someone in the group deletes the alert's message.
        answer = await sandbox.bot_api(
            "deleteMessage", chat_id=GROUP, message_id=first["message_id"]
        )
        assert answer["ok"], answer
        assert await texts(sandbox) == []

        body = am_payload("Disk", ("a", "firing"), ("b", "firing"))
        code, _ = await post(gw, "prod", body, bearer())
        assert code == 202
        [second] = await eventually(lambda: texts(sandbox), lambda found: len(found) == 1)
        assert second["message_id"] != first["message_id"] and "x2" in second["text"]

        # The thread follows the new message: the resolution edits it and replies to it.
        body = am_payload("Disk", ("a", "resolved"), ("b", "resolved"))
        code, _ = await post(gw, "prod", body, bearer())
        assert code == 202
        found = await eventually(lambda: texts(sandbox), lambda found: len(found) == 2)
        edited, reply = found
        assert edited["message_id"] == second["message_id"] and "RESOLVED" in edited["text"]
        assert reply["text"] == "✅ Resolved: Disk"
        assert reply["reply_to_message_id"] == second["message_id"]

        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            metrics = await resp.text()
        assert re.search(r"^gateway_commands_failed_total\{", metrics, re.M) is None
        # Inlet commands count as accepted, by inlet (3 shows and the resolution's reply).
        assert (
            'gateway_commands_accepted_total{method="showThread",source="inlet:prod"} 4.0'
            in metrics
        )


class RefusingQueue(MemoryQueue):
    """The in-memory backend, whose `thread_shown` fails as a full disk does while `full`."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.refused = 0

    async def thread_shown(self, *args: Any, **kwargs: Any) -> None:
        if self.full:
            self.refused += 1
            raise StorageError("queue database: database or disk is full", "disk full")
        await super().thread_shown(*args, **kwargs)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    await worker.prepare()
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.stop(grace=1.0)


async def test_a_storage_error_after_the_first_send_does_not_send_it_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.create_chat(GROUP, "supergroup")
    (tmp_path / "config" / "secrets").mkdir(parents=True)
    secret = tmp_path / "config" / "secrets" / "inlet_prod.key"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    (tmp_path / "gateway.toml").write_text(inlet_toml("prod", "alertmanager", [GROUP]))
    raw = read_toml(tmp_path / "gateway.toml", "gateway.toml", required=True)
    [inlet] = parse_inlets(raw["inlets"], tmp_path, "gateway.toml")
    queue = RefusingQueue()
    bot = create_bot(TOKEN, sandbox.url)
    worker = Worker(queue, bot, FloodController(), RetryBudget())
    inlets = Inlets([inlet], queue, Outbox(queue, worker), worker, Metrics())
    worker.use_deferred(ThreadShower(queue, inlets.by_name, inlets.lifecycle))
    try:
        async with running(worker):
            queue.full = True  # Telegram takes the first send; recording its message id fails
            await inlets.accept(inlet, _no_headers(), am_payload("Disk", ("a", "firing")))
            await eventually(lambda: _refused(queue), lambda refused: refused >= 2)
            queue.full = False
            body = am_payload("Disk", ("a", "firing"), ("b", "firing"))
            await inlets.accept(inlet, _no_headers(), body)
            found = await eventually(
                lambda: texts(sandbox), lambda found: any("x2" in m["text"] for m in found)
            )
    finally:
        await bot.session.close()
    assert len(found) == 1  # edited, never sent twice


async def _refused(queue: RefusingQueue) -> int:
    return queue.refused


def _no_headers() -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict())
