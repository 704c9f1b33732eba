"""The queue contract, run against every backend; then what only the SQLite queue promises."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.errors import QueueSyncError, StartupError
from gateway.queue import MemoryQueue, Queue, SqliteQueue, dbthread, schema
from gateway.queue.base import FailedUpdate, UpdateRecord
from gateway.queue.deadletters import read_failed_updates
from gateway.queue.postgres import PostgresQueue
from gateway.queue.threads import THREAD_METHOD, Thread

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0
BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """An open queue of the backend named by the test's parameter."""
    backend: Queue
    if request.param == "memory":
        backend = MemoryQueue()
    elif request.param == "postgres":
        backend = PostgresQueue(request.getfixturevalue("pg_dsn"))
    else:
        backend = SqliteQueue(tmp_path / "var" / "queue.db")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def message(chat: int | str = 1, text: str = "hi", **fields: Any) -> Command:
    return Command("sendMessage", {"chat_id": chat, "text": text}, **fields)


@pytest.mark.parametrize("queue", BACKENDS, indirect=True)
class TestContract:
    async def test_round_trip_keeps_every_field(self, queue: Queue) -> None:
        params = {
            "chat_id": -1001234567890,
            "text": "Привет 👋 مرحبا \u0000 \ud800 " + "long " * 200_000,
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "✓", "callback_data": "ok"}]]},
            "disable_notification": True,
            "ratio": 0.5,
            "nothing": None,
        }
        command = Command(
            "sendMessage",
            params,
            attempts=2,
            created_at=T0,
            not_before=T0 + 3,
            idempotency_key="key-é",
        )
        await queue.put([command])

        assert command.seq > 0
        assert await queue.get(command.id) == command
        assert await queue.get("cmd_missing") is None

    async def test_put_numbers_commands_in_acceptance_order(self, queue: Queue) -> None:
        first = [message(1), message(2), message(1)]
        second = [message(3)]
        await queue.put(first)
        await queue.put(second)
        await queue.put([])

        seqs = [command.seq for command in [*first, *second]]
        assert seqs == sorted(set(seqs))
        for command in [*first, *second]:
            stored = await queue.get(command.id)
            assert stored is not None and stored.seq == command.seq

    async def test_get_returns_a_copy(self, queue: Queue) -> None:
        command = message(text="original")
        await queue.put([command])
        command.params["text"] = "changed by the caller"

        copy = await queue.get(command.id)
        assert copy is not None
        copy.params["text"] = "changed by a reader"
        copy.status = Status.SENT

        stored = await queue.get(command.id)
        assert stored is not None
        assert stored.params["text"] == "original"
        assert stored.status is Status.QUEUED

    async def test_lane_order_is_acceptance_order(self, queue: Queue) -> None:
        a, b, c, d = message(1, "a"), message(1, "b"), message(1, "c"), message(2, "d")
        await queue.put([a])
        await queue.put([d, b, c])

        assert await queue.lanes() == {"1": 0.0, "2": 0.0}
        delivered = []
        while (claimed := await queue.claim("1", T0)) is not None:
            delivered.append(claimed.params["text"])
            await queue.complete(claimed.id, True, T0)
        assert delivered == ["a", "b", "c"]
        assert await queue.lanes() == {"2": 0.0}

    async def test_claim_takes_only_the_head_and_only_when_due(self, queue: Queue) -> None:
        head = message(7, "head", not_before=T0 + 10)
        behind = message(7, "behind")
        await queue.put([head, behind])

        assert await queue.claim("7", T0) is None  # `behind` is due but waits for the head
        assert await queue.lanes() == {"7": T0 + 10}
        assert await queue.head_due("7") == T0 + 10

        claimed = await queue.claim("7", T0 + 10)
        assert claimed is not None and claimed.id == head.id
        assert (claimed.status, claimed.attempts, claimed.updated_at) == (
            Status.SENDING,
            1,
            T0 + 10,
        )
        assert await queue.get(head.id) == claimed
        assert await queue.claim("nobody", T0) is None
        assert await queue.head_due("nobody") is None

    async def test_one_command_in_flight_per_lane(self, queue: Queue) -> None:
        first, second = message(5, "first"), message(5, "second")
        await queue.put([first, second])
        claimed = await queue.claim("5", T0)
        assert claimed is not None and claimed.id == first.id

        assert await queue.lanes() == {}
        assert await queue.head_due("5") is None
        assert await queue.claim("5", T0) is None
        assert await queue.depth() == 2

        await queue.complete(first.id, True, T0)
        assert await queue.lanes() == {"5": 0.0}
        claimed = await queue.claim("5", T0)
        assert claimed is not None and claimed.id == second.id

    @pytest.mark.parametrize(
        "result",
        [
            {"message_id": 42, "chat": {"id": 5, "type": "private"}, "entities": []},
            [{"message_id": 1}, {"message_id": 2}],
            True,
        ],
    )
    async def test_complete(self, queue: Queue, result: Any) -> None:
        command = message(5)
        await queue.put([command])
        await queue.claim("5", T0)
        await queue.complete(command.id, result, T0 + 1)

        stored = await queue.get(command.id)
        assert stored is not None
        assert (stored.status, stored.result, stored.updated_at) == (Status.SENT, result, T0 + 1)
        assert stored.attempts == 1
        assert await queue.depth() == 0
        assert await queue.lanes() == {}
        assert await queue.head_due("5") is None

    async def test_complete_and_peek_names_the_next_due_time(self, queue: Queue) -> None:
        first, later = message(5, "first"), message(5, "later", not_before=T0 + 30)
        await queue.put([first, later])
        await queue.claim("5", T0)
        done = await queue.complete_and_peek(first.id, {"message_id": 1}, T0 + 1, Status.SENT, "5")
        assert done.next_due == T0 + 30
        await done.durable
        stored = await queue.get(first.id)
        assert stored is not None and (stored.status, stored.result) == (
            Status.SENT,
            {"message_id": 1},
        )
        await queue.claim("5", T0 + 30)
        done = await queue.complete_and_peek(later.id, None, T0 + 31, Status.AWAITING_REPLY, "5")
        assert done.next_due is None  # the lane is empty
        await done.durable
        with pytest.raises(KeyError):
            await queue.complete_and_peek("nope", None, T0, Status.SENT, "5")

    async def test_fail_lets_the_lane_move_on(self, queue: Queue) -> None:
        doomed, next_one = message(5, "doomed"), message(5, "next")
        await queue.put([doomed, next_one])
        await queue.claim("5", T0)
        error = {"code": "bad_request", "description": "Bad Request: chat not found"}
        await queue.fail(doomed.id, error, T0 + 2)

        stored = await queue.get(doomed.id)
        assert stored is not None
        assert (stored.status, stored.error, stored.updated_at) == (Status.FAILED, error, T0 + 2)
        assert await queue.depth() == 1
        claimed = await queue.claim("5", T0 + 2)
        assert claimed is not None and claimed.id == next_one.id

    async def test_retry_keeps_the_head_of_the_lane(self, queue: Queue) -> None:
        head, behind = message(5, "head"), message(5, "behind")
        await queue.put([head, behind])
        await queue.claim("5", T0)
        error = {"code": "server_error", "description": "Bad Gateway"}
        await queue.retry(head.id, T0 + 5, T0 + 1, error)

        stored = await queue.get(head.id)
        assert stored is not None
        assert (stored.status, stored.not_before, stored.updated_at, stored.error) == (
            Status.QUEUED,
            T0 + 5,
            T0 + 1,
            error,
        )
        assert stored.attempts == 1
        assert stored.seq == head.seq
        assert await queue.lanes() == {"5": T0 + 5}
        assert await queue.claim("5", T0 + 2) is None

        claimed = await queue.claim("5", T0 + 5)
        assert claimed is not None and claimed.id == head.id
        assert claimed.attempts == 2
        await queue.retry(head.id, T0 + 6, T0 + 6)
        stored = await queue.get(head.id)
        assert stored is not None and stored.error is None

    async def test_retry_replaces_params(self, queue: Queue) -> None:
        command = message(5, "moved")
        await queue.put([command])
        await queue.claim("5", T0)
        migrated = {"chat_id": -1009876, "text": "moved"}
        await queue.retry(command.id, T0, T0, params=migrated, refund=True)

        claimed = await queue.claim("5", T0)
        assert claimed is not None
        assert claimed.params == migrated
        assert claimed.lane == "5"

    async def test_refund_gives_the_attempt_back(self, queue: Queue) -> None:
        command = message(5)
        await queue.put([command])
        await queue.claim("5", T0)
        await queue.retry(command.id, T0 + 30, T0, refund=True)

        stored = await queue.get(command.id)
        assert stored is not None and stored.attempts == 0
        claimed = await queue.claim("5", T0 + 30)
        assert claimed is not None and claimed.attempts == 1

    @pytest.mark.parametrize("final", [Status.SENT, Status.FAILED])
    async def test_retry_of_a_final_command_changes_nothing(
        self, queue: Queue, final: Status
    ) -> None:
        command = message(5)
        await queue.put([command])
        await queue.claim("5", T0)
        if final is Status.SENT:
            await queue.complete(command.id, True, T0 + 1)
        else:
            await queue.fail(command.id, {"code": "forbidden", "description": "x"}, T0 + 1)
        before = await queue.get(command.id)

        await queue.retry(command.id, T0 + 2, T0 + 2, refund=True)

        assert await queue.get(command.id) == before
        assert await queue.depth() == 0
        assert await queue.lanes() == {}

    async def test_save_part_keeps_the_status(self, queue: Queue) -> None:
        command = message(5, "x" * 9000)
        await queue.put([command])
        await queue.claim("5", T0)
        parts = [{"message_id": 1}, {"message_id": 2}]
        for index, part in enumerate(parts):
            await queue.save_part(command.id, index, part, T0 + 1)

        stored = await queue.get(command.id)
        assert stored is not None
        assert (stored.status, stored.result) == (Status.SENDING, parts)
        await queue.retry(command.id, T0 + 2, T0 + 2)
        claimed = await queue.claim("5", T0 + 2)
        assert claimed is not None and claimed.result == parts
        await queue.save_part(command.id, 2, {"message_id": 3}, T0 + 3)
        await queue.fail(command.id, {"code": "x", "description": "x"}, T0 + 4)
        failed = await queue.get(command.id)
        assert failed is not None and failed.result == [*parts, {"message_id": 3}]

    async def test_complete_replaces_the_saved_parts(self, queue: Queue) -> None:
        command = message(6, "x" * 9000)
        other = message(7, "y" * 9000)
        await queue.put([command, other])
        await queue.claim("6", T0)
        await queue.claim("7", T0)
        await queue.save_part(command.id, 0, {"message_id": 1}, T0)
        await queue.save_part(other.id, 0, {"message_id": 9}, T0)
        final = [{"message_id": 1}, {"message_id": 2}]
        await queue.complete(command.id, final, T0 + 1)

        stored = await queue.get(command.id)
        assert stored is not None and (stored.status, stored.result) == (Status.SENT, final)
        untouched = await queue.get(other.id)
        assert untouched is not None and untouched.result == [{"message_id": 9}]

    async def test_unknown_ids_raise_key_error(self, queue: Queue) -> None:
        with pytest.raises(KeyError):
            await queue.complete("cmd_missing", True, T0)
        with pytest.raises(KeyError):
            await queue.fail("cmd_missing", {"code": "x", "description": "x"}, T0)
        with pytest.raises(KeyError):
            await queue.retry("cmd_missing", T0, T0)
        with pytest.raises(KeyError):
            await queue.save_part("cmd_missing", 0, {}, T0)

    async def test_recover_puts_sending_back(self, queue: Queue) -> None:
        a, b, c = message(1), message(2), message(3)
        await queue.put([a, b, c])
        await queue.claim("1", T0)
        await queue.claim("2", T0)

        assert await queue.recover() == 2
        assert await queue.recover() == 0
        assert await queue.lanes() == {"1": 0.0, "2": 0.0, "3": 0.0}
        stored = await queue.get(a.id)
        assert stored is not None
        assert (stored.status, stored.attempts) == (Status.QUEUED, 1)

    async def test_depth_counts_what_is_not_final(self, queue: Queue) -> None:
        commands = [message(chat) for chat in range(5)]
        await queue.put(commands)
        assert await queue.depth() == 5
        await queue.claim("0", T0)
        assert await queue.depth() == 5
        await queue.complete(commands[0].id, True, T0)
        await queue.claim("1", T0)
        await queue.fail(commands[1].id, {"code": "x", "description": "x"}, T0)
        assert await queue.depth() == 3

    async def test_idempotency_window(self, queue: Queue) -> None:
        parts = [message(1, "part 1", created_at=T0), message(1, "part 2", created_at=T0)]
        for part in parts:
            part.idempotency_key = "k"
        await queue.put(parts)
        await queue.put([message(1, created_at=T0, idempotency_key="other")])

        found = await queue.find_idempotent("k", T0 - 1)
        assert found is not None and found.id == parts[0].id
        found = await queue.find_idempotent("k", T0)
        assert found is not None and found.id == parts[0].id
        assert await queue.find_idempotent("k", T0 + 1) is None
        assert await queue.find_idempotent("unknown", 0.0) is None

        # The window passed: the same key is accepted anew.
        later = message(1, "later", created_at=T0 + 100, idempotency_key="k")
        await queue.put([later])
        found = await queue.find_idempotent("k", T0 + 50)
        assert found is not None and found.id == later.id
        found.params["text"] = "changed"
        again = await queue.find_idempotent("k", T0 + 50)
        assert again is not None and again.params["text"] == "later"

    async def test_prune_deletes_only_final_commands_updated_before(self, queue: Queue) -> None:
        final = await _finish_each_way(queue, now=T0 + 10)
        recent = message(50, created_at=T0 + 20)
        await queue.put([recent])
        await queue.claim("50", T0 + 20)
        await queue.complete(recent.id, True, T0 + 30)

        assert await queue.prune(T0 + 30, 100) == 4  # before is exclusive: `recent` stays
        for status, command in final.items():
            assert await queue.get(command.id) is None, status
        assert await queue.get(recent.id) is not None
        assert await queue.prune(T0 + 1000, 100) == 1
        assert await queue.prune(T0 + 1000, 100) == 0

    async def test_prune_never_touches_unfinished_commands(self, queue: Queue) -> None:
        queued, sending, question = (message(chat, created_at=T0) for chat in (1, 2, 3))
        await queue.put([queued, sending, question])
        await queue.claim("2", T0)
        await queue.claim("3", T0)
        await queue.complete(question.id, {"message_id": 1}, T0, Status.AWAITING_REPLY)

        assert await queue.prune(T0 + 10**9, 100) == 0
        for command in (queued, sending, question):
            assert await queue.get(command.id) is not None
        assert [c.id for c in await queue.awaiting()] == [question.id]
        assert await queue.depth() == 2
        # An old question answered at last becomes prunable like any final command.
        await queue.settle_question(question.id, Status.ANSWERED, {"answer": "yes"}, T0 + 5)
        assert await queue.prune(T0 + 10, 100) == 1
        assert await queue.awaiting() == []

    async def test_prune_deletes_at_most_limit_oldest_first(self, queue: Queue) -> None:
        commands = [message(chat, created_at=T0 + chat) for chat in range(7)]
        await queue.put(commands)
        for command in commands:
            await queue.claim(command.lane, T0 + 10)
            await queue.complete(command.id, True, T0 + 10)

        assert await queue.prune(T0 + 11, 3) == 3
        assert [await queue.get(c.id) is None for c in commands] == [True] * 3 + [False] * 4
        assert await queue.prune(T0 + 11, 3) == 3
        assert await queue.prune(T0 + 11, 3) == 1

    async def test_prune_honours_the_idempotency_window(self, queue: Queue) -> None:
        now = time.time()
        window = c.IDEMPOTENCY_WINDOW_SECONDS
        fresh = message(1, created_at=now - 3600, idempotency_key="fresh")
        stale = message(2, created_at=now - window - 60, idempotency_key="stale")
        plain = message(3, created_at=now - 3600)
        await queue.put([fresh, stale, plain])
        for command in (fresh, stale, plain):
            await queue.claim(command.lane, now - 30)
            await queue.complete(command.id, True, now - 30)

        # A retention shorter than the window: the keyed command within it stays.
        assert await queue.prune(now, 100) == 2
        assert await queue.get(stale.id) is None and await queue.get(plain.id) is None
        assert await queue.find_idempotent("stale", 0.0) is None
        found = await queue.find_idempotent("fresh", now - window)
        assert found is not None and found.id == fresh.id

    async def test_prune_removes_the_parts(self, queue: Queue) -> None:
        command = message(1, created_at=T0)
        await queue.put([command])
        await queue.claim("1", T0)
        await queue.save_part(command.id, 0, {"message_id": 1}, T0)
        await queue.fail(command.id, {"code": "x", "description": "x"}, T0)

        assert await queue.prune(T0 + 1, 10) == 1
        assert await queue.get(command.id) is None
        with pytest.raises(KeyError):
            await queue.save_part(command.id, 1, {}, T0)
        if isinstance(queue, SqliteQueue):
            db = sqlite3.connect(queue.path)
            try:
                parts = db.execute(f"SELECT count(*) FROM {schema.PARTS_TABLE}").fetchone()
            finally:
                db.close()
            assert parts == (0,)

    async def test_lanes_across_many_lanes(self, queue: Queue) -> None:
        expected: dict[str, float] = {}
        for chat in range(300):
            head = message(chat, not_before=T0 + chat)
            await queue.put([head, message(chat, not_before=T0 - chat)])
            expected[str(chat)] = T0 + chat
        for chat in range(0, 300, 3):  # head in flight: the lane is not listed
            await queue.claim(str(chat), T0 + chat)
            del expected[str(chat)]
        for chat in range(1, 300, 3):  # head delivered: the next command is the head
            claimed = await queue.claim(str(chat), T0 + chat)
            assert claimed is not None
            await queue.complete(claimed.id, True, T0)
            expected[str(chat)] = T0 - chat

        assert await queue.lanes() == expected
        for chat in range(300):
            assert await queue.head_due(str(chat)) == expected.get(str(chat))

    async def test_ten_thousand_commands_across_a_thousand_lanes(self, queue: Queue) -> None:
        lanes = 1000
        accepted: dict[str, list[str]] = {str(lane): [] for lane in range(lanes)}
        for batch in range(100):
            commands = [message((batch * 100 + i) % lanes) for i in range(100)]
            await queue.put(commands)
            for command in commands:
                accepted[command.lane].append(command.id)
        assert await queue.depth() == 10_000
        assert await queue.lanes() == dict.fromkeys(accepted, 0.0)

        async def drain(lane: str) -> list[str]:
            delivered = []
            while (claimed := await queue.claim(lane, T0)) is not None:
                assert await queue.claim(lane, T0) is None
                delivered.append(claimed.id)
                await queue.complete(claimed.id, {"ok": True}, T0)
            return delivered

        results = await asyncio.gather(*(drain(lane) for lane in accepted))
        assert dict(zip(accepted, results, strict=True)) == accepted
        assert await queue.depth() == 0
        assert await queue.lanes() == {}

    async def test_a_recorded_update_is_seen_and_not_recorded_twice(self, queue: Queue) -> None:
        record = UpdateRecord(bot_id=7, update_id=100, digest="d1", received_at=T0)
        assert not await queue.update_seen(7, 100, "d1")
        first, second = message(1), message(2)
        assert await queue.record_update(record, [first, second], forget_before=T0 - 10)
        assert await queue.update_seen(7, 100, "d1")
        assert not await queue.update_seen(8, 100, "d1")  # another bot's update 100
        assert 0 < first.seq < second.seq
        assert await queue.get(first.id) == first and await queue.depth() == 2

        again = message(1)
        assert not await queue.record_update(record, [again], forget_before=T0 - 10)
        assert await queue.get(again.id) is None and await queue.depth() == 2
        later = message(1)
        await queue.put([later])
        assert later.seq > second.seq  # numbering carries on after record_update's commands

    async def test_the_same_id_with_another_content_is_a_new_update(self, queue: Queue) -> None:
        """Update ids restart (a new sandbox, a bot silent for a week): only a re-send of the
        same content is a duplicate."""
        await queue.record_update(UpdateRecord(7, 1, "old", T0), [], forget_before=0)
        assert not await queue.update_seen(7, 1, "new")
        fresh = message(1)
        assert await queue.record_update(UpdateRecord(7, 1, "new", T0 + 1), [fresh], 0)
        assert await queue.update_seen(7, 1, "new") and not await queue.update_seen(7, 1, "old")
        assert await queue.get(fresh.id) is not None

    async def test_old_update_records_are_pruned(self, queue: Queue) -> None:
        await queue.record_update(UpdateRecord(7, 1, "a", T0), [], forget_before=0)
        await queue.record_update(UpdateRecord(7, 2, "b", T0 + 100), [], forget_before=T0 + 50)
        assert not await queue.update_seen(7, 1, "a")
        assert await queue.update_seen(7, 2, "b")

    async def test_dead_letters_newest_first_and_bounded(self, queue: Queue) -> None:
        assert await queue.failed_updates(10) == []
        kept = c.FAILED_UPDATES_KEPT
        for n in range(kept + 5):
            failure = FailedUpdate(7, n, T0 + n, "message.poll: missing", "nothing", "{}")
            await queue.record_update(UpdateRecord(7, n, "d", T0 + n, failure), [], 0)
        newest = await queue.failed_updates(3)
        assert [f.update_id for f in newest] == [kept + 4, kept + 3, kept + 2]
        assert newest[0] == FailedUpdate(
            7, kept + 4, T0 + kept + 4, "message.poll: missing", "nothing", "{}"
        )
        assert len(await queue.failed_updates(kept * 2)) == kept

    async def test_a_signature_is_accepted_once_per_client(self, queue: Queue) -> None:
        sig = "ab" * 32
        assert await queue.remember_signature("ci", sig, T0 + 300, T0)
        assert not await queue.remember_signature("ci", sig, T0 + 300, T0 + 1)
        # Per client: the same bytes from another client are that client's business.
        assert await queue.remember_signature("ops", sig, T0 + 300, T0 + 1)
        assert not await queue.remember_signature("ops", sig, T0 + 300, T0 + 299)

    async def test_signatures_are_forgotten_by_time_not_by_count(self, queue: Queue) -> None:
        fresh = await asyncio.gather(  # a count is no limit: every one is still refused
            *(queue.remember_signature("ci", f"{n:064x}", T0 + 300, T0) for n in range(3000))
        )
        assert all(fresh)
        assert not await queue.remember_signature("ci", f"{0:064x}", T0 + 300, T0 + 2)
        assert not await queue.remember_signature("ci", f"{2999:064x}", T0 + 300, T0 + 300)
        # Past its expiry a signature is gone (check_signature refuses it as too old first).
        assert await queue.remember_signature("ci", f"{0:064x}", T0 + 700, T0 + 301)

    async def test_held_lanes_counts_heads_waiting_long_or_failed(self, queue: Queue) -> None:
        await queue.put([message(1, created_at=T0), message(1, created_at=T0 + 500)])
        await queue.put([message(2, created_at=T0 + 500)])
        await queue.put([message(3, created_at=T0 + 500)])
        claimed = await queue.claim("3", T0 + 500)
        assert claimed is not None
        await queue.retry(claimed.id, T0 + 600, T0 + 500, {"code": "server_error"})

        assert await queue.held_lanes(T0 + 100) == 2  # lane 1 (old head) and lane 3 (failed)
        head = await queue.claim("1", T0 + 500)
        assert head is not None
        await queue.complete(head.id, True, T0 + 500)
        assert await queue.held_lanes(T0 + 100) == 1  # lane 1's next command is recent
        assert await queue.held_lanes(T0 + 1000) == 3

    async def test_healthy_storage_reports_no_problem(self, queue: Queue) -> None:
        assert queue.problem() is None
        assert await queue.check() is None


# --- SQLite only ------------------------------------------------------------------------------


async def test_signatures_survive_close_and_reopen_and_expire(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    assert await queue.remember_signature("ci", "a" * 64, T0 + 300, T0)
    assert await queue.remember_signature("ci", "b" * 64, T0 + 600, T0)
    await queue.close()
    queue = SqliteQueue(path)
    await queue.open()
    try:
        assert not await queue.remember_signature("ci", "a" * 64, T0 + 300, T0 + 10)
        assert await queue.remember_signature("ci", "c" * 64, T0 + 900, T0 + 400)  # sweeps "a"
    finally:
        await queue.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(f"SELECT signature FROM {schema.SIGNATURES_TABLE} ORDER BY 1")
        assert [row[0][0] for row in rows] == ["b", "c"]


async def test_commands_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    waiting = message(1, "waiting", not_before=T0 + 60)
    in_flight, behind = message(2, "in flight"), message(2, "behind")
    first = SqliteQueue(path)
    await first.open()
    await first.put([waiting, in_flight, behind])
    await first.claim("2", T0)
    await first.close()

    second = SqliteQueue(path)
    await second.open()
    try:
        assert await second.get(waiting.id) == waiting
        assert await second.depth() == 3
        assert await second.lanes() == {"1": T0 + 60}  # lane 2's head is still `sending`
        assert await second.recover() == 1
        assert await second.lanes() == {"1": T0 + 60, "2": 0.0}
        claimed = await second.claim("2", T0)
        assert claimed is not None
        assert (claimed.id, claimed.attempts) == (in_flight.id, 2)
        newer = message(3)
        await second.put([newer])
        assert newer.seq > behind.seq
    finally:
        await second.close()


async def test_concurrent_puts_share_transactions(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    done: list[int] = []

    async def put(n: int) -> Command:
        command = message(n % 7, f"message {n}")
        await queue.put([command])
        done.append(command.seq)
        return command

    try:
        commands = await asyncio.gather(*(put(n) for n in range(200)))
        assert done == sorted(set(done))  # unique, and numbered in the order puts returned
        for command in commands:
            assert await queue.get(command.id) == command
        # Every commit appends at least one page to the WAL: 200 separate commits would leave
        # at least 200 frames; group commit leaves a handful.
        frames = (path.with_name("queue.db-wal").stat().st_size - 32) // (4096 + 24)
        assert frames < 100
    finally:
        await queue.close()


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    commands = [message(n) for n in range(20)]
    tasks = [asyncio.create_task(queue.put([command])) for command in commands]
    await asyncio.sleep(0)  # the puts are waiting for their transaction
    await queue.close()
    await asyncio.gather(*tasks)
    with pytest.raises(RuntimeError, match="not open"):
        await queue.put([message()])

    reopened = SqliteQueue(path)
    await reopened.open()
    try:
        assert await reopened.depth() == 20
    finally:
        await reopened.close()


async def test_full_durability_syncs_the_log_after_the_commit_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "queue.db"
    visible_at_sync: list[int] = []  # committed rows another connection sees at each sync

    def datasync(fd: int) -> None:
        with contextlib.closing(sqlite3.connect(path)) as db:
            visible_at_sync.append(db.execute("SELECT count(*) FROM commands").fetchone()[0])
        os.fdatasync(fd)

    monkeypatch.setattr(dbthread, "_datasync", datasync)
    queue = SqliteQueue(path)
    await queue.open()
    try:
        await queue.put([message()])
        assert visible_at_sync == [1]  # committed, then synced, then put returned
        await asyncio.gather(*(queue.put([message(n)]) for n in range(100)))
        assert visible_at_sync[-1] == 101
        assert len(visible_at_sync) < 50  # one sync covers many commits
    finally:
        await queue.close()


async def test_normal_durability_leaves_the_log_to_the_os(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(dbthread, "_datasync", calls.append)
    queue = SqliteQueue(tmp_path / "queue.db", synchronous="NORMAL")
    await queue.open()
    try:
        await queue.put([message()])
    finally:
        await queue.close()
    assert calls == []


async def test_a_failed_sync_fails_the_write_and_the_queue_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = {"broken": True}

    def datasync(fd: int) -> None:
        if disk["broken"]:
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)

    monkeypatch.setattr(dbthread, "_datasync", datasync)
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    try:
        with pytest.raises(QueueSyncError, match="could not be synced to disk"):
            await queue.put([message()])
        # A claim is committed all the same: it is handed over, not left `sending` unowned.
        claimed = await queue.claim("1", T0 + 10**10)
        assert claimed is not None and claimed.status is Status.SENDING
        disk["broken"] = False
        command = message()
        await queue.put([command])
        assert await queue.get(command.id) == command
    finally:
        await queue.close()


async def test_a_delivery_record_answers_at_the_commit_and_its_sync_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = {"broken": False}
    release = threading.Event()

    def datasync(fd: int) -> None:
        release.wait(30)
        if disk["broken"]:
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)

    monkeypatch.setattr(dbthread, "_datasync", datasync)
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    try:
        first, second = message(5, "first"), message(5, "second")
        release.set()
        await queue.put([first, second])
        await queue.claim("5", T0)
        release.clear()  # the disk hangs: the record still answers, once committed
        done = await queue.complete_and_peek(first.id, {"message_id": 1}, T0, Status.SENT, "5")
        assert done.next_due is not None and not done.durable.done()
        # The next claim is not answered before its sync, which covers the record too.
        claim = asyncio.ensure_future(queue.claim("5", T0 + 1))
        await asyncio.sleep(0.05)
        assert not claim.done()
        release.set()
        await done.durable
        assert (await claim) is not None
        disk["broken"] = True  # a sync that fails says so through `durable`
        done = await queue.complete_and_peek(second.id, {"message_id": 2}, T0, Status.SENT, "5")
        with pytest.raises(QueueSyncError):
            await done.durable
    finally:
        disk["broken"] = False
        release.set()
        await queue.close()


async def test_a_read_sees_the_writes_submitted_before_it(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    try:
        commands = [message(n) for n in range(20)]
        puts = [asyncio.create_task(queue.put([command])) for command in commands]
        await asyncio.sleep(0)  # every put is handed to the database thread
        assert await queue.depth() == 20
        await asyncio.gather(*puts)
    finally:
        await queue.close()


CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.commands import Command
from gateway.queue.sqlite import SqliteQueue

async def main():
    queue = SqliteQueue(Path(sys.argv[1]))
    await queue.open()

    async def putter(n):
        while True:
            command = Command("sendMessage", {"chat_id": n, "text": "x" * 300})
            await queue.put([command])
            sys.stdout.write(command.id + "\\n")
            sys.stdout.flush()

    await asyncio.gather(*(putter(n) for n in range(16)))

asyncio.run(main())
"""


@pytest.mark.slow
async def test_every_accepted_command_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    accepted: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            accepted.append((await proc.stdout.readline()).decode())
            # Kill at a random moment, in the middle of the putting.
            deadline = asyncio.get_running_loop().time() + random.uniform(0.3, 1.5)
            while asyncio.get_running_loop().time() < deadline:
                accepted.append((await proc.stdout.readline()).decode())
            proc.send_signal(signal.SIGKILL)
            rest, stderr = await proc.communicate()
        assert proc.returncode == -signal.SIGKILL, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    # Only whole lines: an id is printed once its put returned.
    ids = [
        line.strip() for line in [*accepted, *rest.decode().splitlines(True)] if line.endswith("\n")
    ]
    assert len(ids) > 100

    queue = SqliteQueue(path)
    await queue.open()
    try:
        missing = [command_id for command_id in ids if await queue.get(command_id) is None]
        assert missing == []
        assert await queue.depth() >= len(ids)
    finally:
        await queue.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def _bytes_written() -> int:
    """What this process has passed to write() so far (every thread), from /proc/self/io."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
async def test_saving_a_part_does_not_rewrite_the_text(tmp_path: Path) -> None:
    """Each saved part of a 1 MB text writes a few pages, not the text again (it did: 370 MB
    written for the first 100 parts of a 1 MiB text)."""
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    try:
        command = message(8, "x" * 1_000_000)
        await queue.put([command])
        await queue.claim("8", T0)
        result = {"message_id": 0, "text": "x" * 4096}
        await queue.save_part(command.id, 0, result, T0)
        before = _bytes_written()
        for index in range(1, 51):
            await queue.save_part(command.id, index, {**result, "message_id": index}, T0)
        per_part = (_bytes_written() - before) / 50
        stored = await queue.get(command.id)
    finally:
        await queue.close()
    assert stored is not None and len(stored.result) == 51
    # About 60 KiB, plus one pointer-map page per commit with incremental auto-vacuum; the
    # text rewritten would be over 1 MB per part.
    assert per_part < 96 * 1024, f"{per_part:.0f} bytes written per part"


async def test_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    await queue.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        table = schema.COMMANDS_TABLE
        assert {f"{table}_lane_head", f"{table}_idempotency", f"{table}_awaiting"} <= indexes
        assert f"{table}_status" not in indexes
    finally:
        db.close()


async def test_a_version_2_database_is_migrated_with_its_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 rebuilds the table (seq becomes the rowid); nothing may be lost or reordered."""
    path = tmp_path / "queue.db"
    monkeypatch.setattr(schema, "MIGRATIONS", {n: schema.MIGRATIONS[n] for n in (1, 2)})
    old = SqliteQueue(path)
    await old.open()
    first, second, sent, question = message(7), message(7), message(8), message(9)
    await old.put([first, second, sent, question])
    await old.complete(sent.id, {"message_id": 1}, T0)
    await old.complete(question.id, {"message_id": 2}, T0, status=Status.AWAITING_REPLY)
    await old.close()
    monkeypatch.undo()

    queue = SqliteQueue(path)
    await queue.open()
    try:
        done = await queue.get(sent.id)
        assert done is not None and done.status == Status.SENT and done.result == {"message_id": 1}
        stored = await queue.get(first.id)
        assert stored is not None and stored.seq == first.seq
        claimed = await queue.claim("7", T0 + 1)
        assert claimed is not None and claimed.id == first.id
        assert [c.id for c in await queue.awaiting()] == [question.id]
        assert await queue.depth() == 2  # first (sending) and second
        newer = message(7)
        await queue.put([newer])
        assert newer.seq > question.seq
    finally:
        await queue.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


async def test_migrations_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "queue.db"
    command = message()
    queue = SqliteQueue(path)
    await queue.open()
    await queue.put([command])
    await queue.close()

    step = schema.SCHEMA_VERSION + 1
    add_column = f"ALTER TABLE {schema.COMMANDS_TABLE} ADD COLUMN note TEXT"
    monkeypatch.setitem(schema.MIGRATIONS, step, (add_column,))
    migrated = SqliteQueue(path)
    await migrated.open()
    try:
        assert await migrated.get(command.id) == command
    finally:
        await migrated.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (step,)
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({schema.COMMANDS_TABLE})")]
        assert "note" in columns
    finally:
        db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()

    with pytest.raises(StartupError, match="schema version 99") as caught:
        await SqliteQueue(path).open()
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("case", ["parent is a file", "path is a directory", "not a database"])
async def test_an_unopenable_path_is_a_startup_error(tmp_path: Path, case: str) -> None:
    if case == "parent is a file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "queue.db"
    elif case == "path is a directory":
        path = tmp_path / "queue.db"
        path.mkdir()
    else:
        path = tmp_path / "queue.db"
        path.write_bytes(b"this is no database " * 100)

    with pytest.raises(StartupError) as caught:
        await SqliteQueue(path).open()
    message_text = str(caught.value)
    assert str(path) in message_text
    assert "\n" not in message_text


def test_synchronous_must_be_a_known_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteQueue(tmp_path / "queue.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_update_records_survive_a_restart_and_dead_letters_read_while_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    queue = SqliteQueue(path)
    await queue.open()
    failure = FailedUpdate(7, 5, T0, "message.entities.0.length: missing", "dispatched", "{}")
    dispatch = message(1)
    await queue.record_update(UpdateRecord(7, 5, "d", T0, failure), [dispatch], 0)
    try:  # the CLI's read-only view while the gateway holds the database
        assert read_failed_updates(path, 10) == [failure]
    finally:
        await queue.close()
    assert read_failed_updates(path, 10) == [failure]

    reopened = SqliteQueue(path)
    await reopened.open()
    try:
        assert await reopened.update_seen(7, 5, "d")
        assert not await reopened.record_update(UpdateRecord(7, 5, "d", T0 + 1), [message(1)], 0)
        assert await reopened.depth() == 1
    finally:
        await reopened.close()


async def _finish_each_way(queue: Queue, now: float) -> dict[Status, Command]:
    """Four commands brought to each final status (sent, failed, answered, expired) at `now`."""
    commands = {
        status: message(n, created_at=T0)
        for n, status in enumerate((Status.SENT, Status.FAILED, Status.ANSWERED, Status.EXPIRED))
    }
    await queue.put(list(commands.values()))
    for status, command in commands.items():
        await queue.claim(command.lane, T0)
        if status is Status.SENT:
            await queue.complete(command.id, True, now)
        elif status is Status.FAILED:
            await queue.fail(command.id, {"code": "x", "description": "x"}, now)
        else:
            await queue.complete(command.id, {"message_id": 1}, T0, Status.AWAITING_REPLY)
            await queue.settle_question(command.id, status, {"answer": "a"}, now)
    return commands


def show(thread: Thread, chat: int = -100) -> Command:
    return Command(THREAD_METHOD, {"chat_id": chat}, meta={"thread": thread.id})


@pytest.mark.parametrize("queue", BACKENDS, indirect=True)
class TestThreads:
    """The inlets' threads: one message per alert group (gateway/queue/threads.py)."""

    async def test_save_and_find(self, queue: Queue) -> None:
        thread = Thread("prod", "-100:42", "group-1", created_at=T0, version=1)
        thread.state = {"alerts": {"a": {"status": "firing"}}}
        command = show(thread)
        assert await queue.save_thread(thread, 0, [command]) == [command]
        assert thread.pending == command.id
        found = await queue.open_thread("prod", "-100:42", "group-1")
        assert found is not None and found.id == thread.id and found.state == thread.state
        assert found.pending == command.id and found.digest is None
        assert (await queue.thread(thread.id)) == found
        assert await queue.open_thread("prod", "-100:42", "group-2") is None
        assert await queue.thread("unknown") is None
        assert (await queue.get(command.id)) is not None

    async def test_version_conflicts_store_nothing(self, queue: Queue) -> None:
        thread = Thread("prod", "-100", "g", created_at=T0, version=1)
        assert await queue.save_thread(thread, 0, [show(thread)]) is not None
        stale = Thread("prod", "-100", "g", id=thread.id, created_at=T0, version=2)
        late = show(stale)
        assert await queue.save_thread(stale, 0, [late]) is None
        assert await queue.get(late.id) is None
        # A second new thread for the same key: the first one wins.
        other = Thread("prod", "-100", "g", created_at=T0, version=1)
        assert await queue.save_thread(other, 0, []) is None

    async def test_one_show_waits_in_the_queue_at_a_time(self, queue: Queue) -> None:
        thread = Thread("prod", "-100", "g", created_at=T0, version=1)
        first = show(thread)
        await queue.save_thread(thread, 0, [first])
        thread.version = 2
        reply = Command(THREAD_METHOD, {"chat_id": -100}, meta={"thread": thread.id, "reply": "x"})
        stored = await queue.save_thread(thread, 1, [show(thread), reply])
        assert stored == [reply]  # the waiting show will show version 2 anyway
        assert thread.pending == first.id
        claimed = await queue.claim("-100", T0 + 10)
        assert claimed is not None and claimed.id == first.id
        thread.version = 3
        again = show(thread)
        assert await queue.save_thread(thread, 2, [again]) == [again]  # the first is in flight
        assert thread.pending == again.id

    async def test_shown_and_message_id(self, queue: Queue) -> None:
        thread = Thread("prod", "-100", "g", created_at=T0, version=2)
        await queue.save_thread(thread, 0, [])
        await queue.thread_shown(thread.id, 2, 77, "v2")
        await queue.thread_shown(thread.id, 1, 99, "v1")  # late and older: changes nothing
        found = await queue.thread(thread.id)
        assert found is not None and (found.shown, found.message_id, found.digest) == (2, 77, "v2")
        # A later save from a stale copy does not roll them back.
        thread.version, thread.closed, thread.updated_at = 3, True, T0 + 1
        assert await queue.save_thread(thread, 2, []) is not None
        assert (thread.shown, thread.message_id, thread.digest) == (2, 77, "v2")
        assert await queue.open_thread("prod", "-100", "g") is None
        fresh = Thread("prod", "-100", "g", created_at=T0 + 2, version=1)
        assert await queue.save_thread(fresh, 0, []) is not None

    async def test_a_deleted_message_is_forgotten(self, queue: Queue) -> None:
        thread = Thread("prod", "-100", "g", created_at=T0, version=2)
        await queue.save_thread(thread, 0, [])
        await queue.thread_shown(thread.id, 1, 77, "v1")
        await queue.thread_message_gone(thread.id, 78)  # not its message: nothing changes
        found = await queue.thread(thread.id)
        assert found is not None and (found.message_id, found.digest) == (77, "v1")
        await queue.thread_message_gone(thread.id, 77)
        found = await queue.thread(thread.id)
        assert found is not None
        assert (found.message_id, found.digest, found.shown) == (None, None, 1)
        await queue.thread_shown(thread.id, 2, 80, "v2")  # the new message's id is taken
        found = await queue.thread(thread.id)
        assert found is not None and (found.message_id, found.shown) == (80, 2)
