"""A group's per-minute limit holds across a leadership change.

Leader A sends a group its whole minute's allowance; A is SIGKILLed and B takes over with
more for that group queued. B reads the last minute's sends from the database before its
first send (gateway/cluster/recent.py), so the sandbox (same limit) answers no 429: B waits
for the minute to pass, then delivers the rest.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import AsyncExitStack

import pytest

from gateway.flood import FloodController, FloodLimits
from gateway.sandbox import SandboxSettings
from tests.cluster_helpers import Cluster
from tests.conftest import Sandbox, Workspace

GROUP = -1001234567890
LIMIT = 5


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=200, chat_per_second=50, group_per_minute=LIMIT)


def test_recalled_sends_hold_a_group_and_a_slow_chat_but_not_the_bot() -> None:
    now = [1000.0]
    flood = FloodController(
        FloodLimits(global_per_second=30, chat_per_second=0.5, group_per_minute=3),
        clock=lambda: now[0],
    )
    flood.recall(str(GROUP), [50.0, 40.0, 30.0])  # as a lane: a string; oldest 50 s ago
    assert flood.try_acquire(GROUP) == pytest.approx(10.0 + 0.02)
    flood.recall(7, [1.0])  # a private chat at one send per 2 s
    assert flood.try_acquire(7) == pytest.approx(1.0 + 0.02)
    assert flood.try_acquire(8) == 0.0  # the bot-wide window took nothing in
    now[0] += 10.1
    assert flood.try_acquire(GROUP) == 0.0


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_new_leader_keeps_to_the_group_limit_its_predecessor_used(
    workspace: Workspace, sandbox: Sandbox, pg_dsn: str
) -> None:
    await sandbox.create_chat(GROUP, "supergroup")
    env = {"GATEWAY_FLOOD_GROUP_PER_MINUTE": str(LIMIT)}
    async with AsyncExitStack() as stack:
        cluster = Cluster(workspace, sandbox, pg_dsn, stack)
        a = await cluster.start(env)
        assert await cluster.wait_for_leader() is a
        b = await cluster.start(env)
        ids = []
        for n in range(LIMIT):
            status, body, _ = await cluster.enqueue(b, {"chat_id": GROUP, "text": f"a{n}"})
            assert status == 202, body
            ids.append(body["id"])
        assert set((await cluster.final_statuses(ids)).values()) == {"sent"}
        first_sent = time.monotonic()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        for n in range(3):
            status, body, _ = await cluster.enqueue(b, {"chat_id": GROUP, "text": f"b{n}"})
            assert status == 202, body
            ids.append(body["id"])
        assert await cluster.wait_for_leader() is b
        finals = await cluster.final_statuses(ids[LIMIT:])  # waits out the minute
        waited = time.monotonic() - first_sent
        recalled = b.log_entries("counted in flood control")
    async with sandbox.http.get(f"{sandbox.url}/sandbox/stats") as resp:
        stats = await resp.json()
    texts = [m["text"] for m in await sandbox.messages(GROUP)]
    report = {
        "flood_429": stats.get("flood_429"),
        "group_texts": texts,
        "rest_sent_after_seconds": round(waited, 1),
        "recalled": [e["message"] for e in recalled],
    }
    print(f"\nflood across takeover: {json.dumps(report)}")
    assert stats.get("flood_429") == 0, report
    assert set(finals.values()) == {"sent"}, report
    assert sorted(texts) == sorted([f"a{n}" for n in range(LIMIT)] + ["b0", "b1", "b2"]), report
    assert recalled, report
