"""The delivery engine end to end: order, fairness, flood control, retries, failures, status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.sandbox import SandboxSettings
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox

FAST = {"GATEWAY_FLOOD_CHAT_PER_SECOND": "20", "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "100"}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    """Faster than Telegram where a test is not about the limits; tests about them set limits."""
    return SandboxSettings(global_per_second=100, chat_per_second=20)


async def enqueue_ok(gw: Gateway, body: dict[str, Any], status: int = 202) -> str:
    code, answer = await gw.enqueue(body)
    assert code == status, answer
    command_id: str = answer["id"]
    return command_id


async def stats(sandbox: Sandbox) -> dict[str, Any]:
    data: dict[str, Any] = await sandbox.control("GET", "stats")
    return data


async def test_each_chat_keeps_its_order(gateway_factory: GatewayFactory, sandbox: Sandbox) -> None:
    chats = [101, 102, 103]
    for chat in chats:
        await sandbox.create_chat(chat)
    async with gateway_factory(FAST) as gw:
        for n in range(15):
            for chat in chats:
                await enqueue_ok(gw, {"chat_id": chat, "text": f"{chat}-{n}"})
        for chat in chats:
            messages = await sandbox.wait_messages(chat, 15)
            assert [m["text"] for m in messages] == [f"{chat}-{n}" for n in range(15)]


async def test_a_busy_chat_does_not_starve_others(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(201)
    await sandbox.create_chat(202)
    env = {"GATEWAY_FLOOD_CHAT_PER_SECOND": "20", "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "20"}
    async with gateway_factory(env) as gw:
        for n in range(40):
            await enqueue_ok(gw, {"chat_id": 201, "text": f"busy {n}"})
        quiet = await enqueue_ok(gw, {"chat_id": 202, "text": "quiet"})
        before = len(await sandbox.messages(201))
        done = await gw.command(quiet, wait=10)
        assert done["status"] == "sent"
        after = len(await sandbox.messages(201))
        assert after < 40, "the busy chat should still have been busy"
        # Round robin: the quiet chat's message goes out within a couple of busy sends.
        assert after - before <= 3, f"the quiet chat waited for {after - before} busy messages"


async def test_flood_limits_are_never_exceeded(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """Telegram's default limits on both sides: 60 messages to 20 chats, no 429."""
    await sandbox.control(
        "PUT", "limits", {"global_per_second": 30, "chat_per_second": 1, "group_per_minute": 20}
    )
    chats = list(range(301, 321))
    for chat in chats:
        await sandbox.create_chat(chat)
    async with gateway_factory() as gw:
        ids = [
            await enqueue_ok(gw, {"chat_id": chat, "text": f"m{n}"})
            for n in range(3)
            for chat in chats
        ]
        for command_id in ids:
            assert (await gw.command(command_id, wait=20))["status"] == "sent"
    observed = await stats(sandbox)
    assert observed["too_many_requests"] == 0, observed
    assert observed["max_global_per_second"] <= 30
    assert observed["max_chat_per_second"] <= 1


async def test_429_pauses_and_retries(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    await sandbox.control(
        "POST",
        "faults",
        {"method": "sendMessage", "count": 1, "kind": "retry_after", "retry_after": 1},
    )
    started = time.monotonic()
    command_id = await enqueue_ok(gateway, {"text": "after a pause", "chat_id": USER})
    done = await gateway.command(command_id, wait=15)
    assert done["status"] == "sent"
    assert time.monotonic() - started >= 1.0
    assert done["attempts"] == 1  # a flood pause is not the command's fault
    async with gateway.http.get(f"{gateway.url}/metrics", headers=gateway.auth) as resp:
        text = await resp.text()
    assert "gateway_telegram_429_total 1.0" in text


@pytest.mark.parametrize(("kind", "attempts"), [("server_error", 3), ("drop", 2)])
async def test_transient_failures_are_retried(
    gateway: Gateway, sandbox: Sandbox, kind: str, attempts: int
) -> None:
    await sandbox.create_chat(USER)
    await sandbox.control(
        "POST", "faults", {"method": "sendMessage", "count": attempts - 1, "kind": kind}
    )
    command_id = await enqueue_ok(gateway, {"text": "eventually", "chat_id": USER})
    done = await gateway.command(command_id, wait=20)
    assert done["status"] == "sent", done
    assert done["attempts"] == attempts
    assert [m["text"] for m in await sandbox.messages(USER)] == ["eventually"]


async def test_exhausted_budget_fails_with_the_reason(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """Server errors are an outage: retried past max_attempts, until max_age."""
    await sandbox.create_chat(USER)
    await sandbox.control(
        "POST", "faults", {"method": "sendMessage", "count": 50, "kind": "server_error"}
    )
    env = {"GATEWAY_DELIVERY_MAX_ATTEMPTS": "2", "GATEWAY_DELIVERY_MAX_AGE": "2"}
    async with gateway_factory(env) as gw:
        command_id = await enqueue_ok(gw, {"text": "doomed", "chat_id": USER})
        done = await gw.command(command_id, wait=20)
    assert done["status"] == "failed"
    assert done["attempts"] > 2
    assert done["error"]["code"] == "server_error"
    assert f"gave up after {done['attempts']} attempt(s)" in done["error"]["description"]


async def test_permanent_failures_are_final(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    await sandbox.control("POST", f"users/{USER}/block")
    blocked = await enqueue_ok(gateway, {"text": "hello?", "chat_id": USER})
    missing = await enqueue_ok(gateway, {"text": "anyone?", "chat_id": 999_999})
    done = await gateway.command(blocked, wait=10)
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"] == {
        "code": "forbidden",
        "description": "Forbidden: bot was blocked by the user",
    }
    done = await gateway.command(missing, wait=10)
    assert done["status"] == "failed"
    assert done["error"]["description"] == "Bad Request: chat not found"


async def test_group_migration_is_followed_and_remembered(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(-4000, "group")
    answer = await sandbox.control("POST", "chats/-4000/migrate")
    new_id = answer["migrate_to_chat_id"]
    first = await enqueue_ok(gateway, {"text": "one", "chat_id": -4000})
    done = await gateway.command(first, wait=10)
    assert done["status"] == "sent"
    assert done["result"]["chat"]["id"] == new_id
    second = await enqueue_ok(gateway, {"text": "two", "chat_id": -4000})
    assert (await gateway.command(second, wait=10))["result"]["chat"]["id"] == new_id
    assert [m["text"] for m in await sandbox.messages(new_id)] == ["one", "two"]


async def test_long_text_is_split_in_order(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    paragraph = "<b>Build log</b> " + "line of output " * 60
    text = "\n\n".join(f"{n}: {paragraph}" for n in range(10))  # ~9,300 characters
    command_id = await enqueue_ok(gateway, {"text": text, "chat_id": USER, "parse_mode": "HTML"})
    done = await gateway.command(command_id, wait=20)
    assert done["status"] == "sent", done
    parts = done["result"]
    assert isinstance(parts, list) and len(parts) == 3
    shown = [m["text"] for m in await sandbox.messages(USER)]
    assert shown == [part["text"] for part in parts]
    assert shown[0].startswith("0: Build log") and shown[-1].rstrip().endswith("line of output")


@pytest.mark.parametrize(("policy", "status"), [("reject", 400), ("truncate", 202)])
async def test_long_text_policies(
    gateway_factory: GatewayFactory, sandbox: Sandbox, policy: str, status: int
) -> None:
    await sandbox.create_chat(USER)
    async with gateway_factory({"GATEWAY_DELIVERY_LONG_TEXT": policy}) as gw:
        code, answer = await gw.enqueue({"text": "word " * 2000, "chat_id": USER})
        assert code == status, answer
        if status == 202:
            done = await gw.command(answer["id"], wait=10)
            assert done["status"] == "sent"
            assert len(done["result"]["text"]) <= 4096
        else:
            assert answer["error"]["code"] == "text_too_long"


async def test_idempotency_key_in_body_or_header(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    body = {"text": "once", "chat_id": USER, "idempotency_key": "deploy-42"}
    code, first = await gateway.enqueue(body)
    assert code == 202
    code, again = await gateway.enqueue(body)
    assert code == 200 and again["id"] == first["id"] and again["duplicate"] is True
    headers = {"Idempotency-Key": "deploy-43"}
    code, other = await gateway.enqueue({"text": "twice", "chat_id": USER}, headers=headers)
    assert code == 202 and other["id"] != first["id"]
    code, repeat = await gateway.enqueue({"text": "twice", "chat_id": USER}, headers=headers)
    assert code == 200 and repeat["id"] == other["id"]
    await gateway.command(other["id"], wait=10)
    assert [m["text"] for m in await sandbox.messages(USER)] == ["once", "twice"]


async def test_concurrent_repeats_enqueue_once(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    body = {"text": "race", "chat_id": USER, "idempotency_key": "same"}
    answers = await asyncio.gather(*(gateway.enqueue(body) for _ in range(10)))
    assert sorted(code for code, _ in answers) == [200] * 9 + [202]
    assert len({answer["id"] for _, answer in answers}) == 1


async def test_status_and_wait(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    command_id = await enqueue_ok(gateway, {"text": "status", "chat_id": USER})
    done = await gateway.command(command_id, wait=10)
    assert done["status"] == "sent" and done["method"] == "sendMessage"
    assert done["chat_id"] == USER and done["attempts"] == 1 and done["error"] is None
    assert done["result"]["text"] == "status"
    assert done["created_at"] <= done["updated_at"]
    async with gateway.http.get(f"{gateway.url}/commands/cmd_nope", headers=gateway.auth) as resp:
        assert resp.status == 404
    for wait in ("61", "-1", "soon"):
        async with gateway.http.get(
            f"{gateway.url}/commands/{command_id}?wait={wait}", headers=gateway.auth
        ) as resp:
            assert resp.status == 400


async def test_metrics_count_what_happened(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    command_id = await enqueue_ok(gateway, {"text": "counted", "chat_id": USER})
    await gateway.command(command_id, wait=10)
    await sandbox.say("/help")
    await sandbox.wait_messages(USER, 2)
    async with gateway.http.get(f"{gateway.url}/metrics", headers=gateway.auth) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'gateway_commands_accepted_total{method="sendMessage",source="api"} 1.0' in text
    assert 'gateway_commands_sent_total{method="sendMessage"}' in text
    assert 'gateway_webhook_updates_total{type="message"} 1.0' in text
    assert "gateway_delivery_latency_seconds_bucket" in text
    assert "gateway_queue_depth" in text
