"""`/enqueue_command` and `/healthz`, end to end: HTTPS in, the sandbox chat out."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from gateway import constants as c
from gateway.queue import dbthread
from tests.conftest import OTHER_USER, USER, Gateway, GatewayFactory, Sandbox

pytestmark = pytest.mark.asyncio


async def test_short_form_reaches_the_allowed_user(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(USER)
    status, body = await gateway.enqueue({"text": "deploy <b>done</b>", "parse_mode": "HTML"})
    assert status == 202
    assert body["status"] == "queued" and body["id"].startswith("cmd_")
    [message] = await sandbox.wait_messages(USER, 1)
    assert message["text"] == "deploy done"


async def test_default_recipients_are_every_allowed_user(
    workspace: Any, gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    workspace.write("config/secrets/allowed_user.txt", "1111\n3333\n")
    for chat in (1111, 3333):
        await sandbox.create_chat(chat)
    async with gateway_factory() as gw:
        status, body = await gw.enqueue({"text": "to all"})
        assert status == 202 and len(body["ids"]) == 2 and body["id"] == body["ids"][0]
        for chat in (1111, 3333):
            assert [m["text"] for m in await sandbox.wait_messages(chat, 1)] == ["to all"]


async def test_explicit_chat_and_general_form(gateway: Gateway, sandbox: Sandbox) -> None:
    await sandbox.create_chat(-5000, "group")
    status, _ = await gateway.enqueue(
        {"method": "sendMessage", "params": {"chat_id": -5000, "text": "first"}}
    )
    assert status == 202
    [first] = await sandbox.wait_messages(-5000, 1)
    status, _ = await gateway.enqueue(
        {
            "method": "editMessageText",
            "params": {"chat_id": -5000, "message_id": first["message_id"], "text": "edited"},
        }
    )
    assert status == 202
    status, _ = await gateway.enqueue(
        {"method": "sendChatAction", "params": {"chat_id": -5000, "action": "typing"}}
    )
    assert status == 202
    status, _ = await gateway.enqueue({"text": "second", "chat_id": "-5000"})
    assert status == 202
    messages = await sandbox.wait_messages(-5000, 2)
    assert [m["text"] for m in messages] == ["edited", "second"]
    status, _ = await gateway.enqueue(
        {"method": "deleteMessage", "params": {"chat_id": -5000, "message_id": first["message_id"]}}
    )
    assert status == 202
    for _ in range(100):
        if len(await sandbox.messages(-5000)) == 1:
            break
        await asyncio.sleep(0.05)
    assert [m["text"] for m in await sandbox.messages(-5000)] == ["second"]


async def test_long_text_is_accepted(gateway: Gateway) -> None:
    status, body = await gateway.enqueue({"text": "x" * 5000, "chat_id": USER})
    assert status == 202 and body["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "missing_field", "text"),
        ({"chat_id": 1}, "missing_field", "text"),
        ({"text": ""}, "empty_text", "text"),
        ({"text": "   "}, "empty_text", "text"),
        ({"text": 42}, "invalid_type", "text"),
        ({"text": "hi", "chat_id": 1.5}, "invalid_type", "chat_id"),
        ({"text": "hi", "chat_id": "ann"}, "invalid_chat_id", "chat_id"),
        ({"text": "hi", "chat_id": True}, "invalid_type", "chat_id"),
        ({"text": "hi", "parse_mode": "html5"}, "invalid_parse_mode", "parse_mode"),
        ({"text": "hi", "colour": "red"}, "unknown_field", "colour"),
        ({"method": "banChatMember", "params": {"chat_id": 1}}, "unknown_method", "method"),
        ({"method": "sendMessage", "params": "x"}, "invalid_type", "params"),
        ({"method": "sendMessage", "params": {"text": "x"}}, "missing_field", "params.chat_id"),
        ({"method": "sendMessage", "params": {"chat_id": 1}}, "missing_field", "params.text"),
        (
            {"method": "editMessageText", "params": {"chat_id": 1, "text": "x"}},
            "missing_field",
            "params.message_id",
        ),
        (
            {"method": "deleteMessage", "params": {"chat_id": 1, "message_id": "seven"}},
            "invalid_params",
            "params.message_id",
        ),
        (
            {"method": "sendMessage", "params": {"chat_id": 1, "text": "x", "bogus": 1}},
            "invalid_params",
            "params.bogus",
        ),
        # pydantic would turn false into 0 (schemathesis found it): Telegram takes a number.
        (
            {
                "method": "sendMessage",
                "params": {"chat_id": 1, "text": "x", "message_thread_id": False},
            },
            "invalid_params",
            "params.message_thread_id",
        ),
        (
            {
                "method": "sendMessage",
                "params": {"chat_id": 1, "text": "x", "reply_parameters": {"message_id": True}},
            },
            "invalid_params",
            "params.reply_parameters.message_id",
        ),
    ],
)
async def test_bad_input_gets_a_clear_400(
    gateway: Gateway, body: dict[str, Any], code: str, field: str | None
) -> None:
    status, answer = await gateway.enqueue(body)
    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"text": NaN}', b"[" * 100000],
)
async def test_malformed_json_is_400(gateway: Gateway, raw: bytes) -> None:
    async with gateway.http.post(
        f"{gateway.url}/enqueue_command",
        data=raw,
        headers={**gateway.auth, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"


async def test_non_json_content_type_is_415(gateway: Gateway) -> None:
    async with gateway.http.post(
        f"{gateway.url}/enqueue_command", data={"text": "hi"}, headers=gateway.auth
    ) as resp:
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"


async def test_body_over_the_limit_is_413(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory({"GATEWAY_SERVER_BODY_LIMIT": "2048"}) as gw:
        status, answer = await gw.enqueue({"text": "x" * 4000})
        assert status == 413
        assert answer["error"]["code"] == "body_too_large"
        status, _ = await gw.enqueue({"text": "x" * 1000})
        assert status == 202


async def test_unknown_route_and_method_are_json(gateway: Gateway) -> None:
    async with gateway.http.get(f"{gateway.url}/nope") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    async with gateway.http.get(f"{gateway.url}/enqueue_command", headers=gateway.auth) as resp:
        assert resp.status == 405 and "Allow" in resp.headers


async def test_healthz(gateway: Gateway) -> None:
    async with gateway.http.get(f"{gateway.url}/healthz") as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {
            "status": "ok",
            "reasons": [],
            "worker": "running",
            "webhook": "set",
            "storage": "ok",
            "held_chats": 0,
            "paused_seconds": 0.0,
        }


async def test_a_failed_disk_sync_is_a_503_and_the_queue_carries_on(
    gateway: Gateway, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sandbox.create_chat(USER)
    disk = {"broken": True}
    real_datasync = dbthread._datasync

    def datasync(fd: int) -> None:
        if disk["broken"]:
            raise OSError(errno.EIO, "Input/output error")
        real_datasync(fd)

    monkeypatch.setattr(dbthread, "_datasync", datasync)
    url = gateway.url + "/enqueue_command"
    async with gateway.http.post(url, json={"text": "lost?"}, headers=gateway.auth) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == str(c.STORAGE_RETRY_AFTER_SECONDS)
        error = (await resp.json())["error"]
    assert error["code"] == "storage_unavailable"
    assert "idempotency key" in error["message"]

    disk["broken"] = False
    status, _ = await gateway.enqueue({"text": "on disk"})
    assert status == 202
    # The unconfirmed command was committed all the same: it is delivered too, first (which
    # is why the 503 tells the client to retry with an idempotency key).
    messages = await sandbox.wait_messages(USER, 2)
    assert [m["text"] for m in messages] == ["lost?", "on disk"]


async def health_of(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    async with gateway.http.get(f"{gateway.url}/healthz") as resp:
        return resp.status, await resp.json()


async def test_healthz_is_degraded_while_a_chat_retries_and_ok_after(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    await sandbox.control(
        "POST", "faults", {"method": "sendMessage", "count": 1, "kind": "server_error"}
    )
    status, body = await gateway.enqueue({"text": "after a 500"})
    assert status == 202
    for _ in range(200):  # until the failed attempt is recorded
        code, report = await health_of(gateway)
        if report["status"] != "ok":
            break
        await asyncio.sleep(0.02)
    assert code == 200
    assert report["status"] == "degraded"
    assert report["held_chats"] == 1
    assert report["reasons"] == [
        f"1 chat(s) held up: their oldest message has waited over "
        f"{c.HELD_LANE_SECONDS:g}s or failed an attempt"
    ]
    assert str(USER) not in str(report)  # public: no chat ids
    assert (await gateway.command(body["id"], wait=30))["status"] == "sent"
    assert await health_of(gateway) == (
        200,
        {**report, "status": "ok", "reasons": [], "held_chats": 0},
    )


async def test_healthz_reports_telegrams_bot_wide_pause(gateway: Gateway, sandbox: Sandbox) -> None:
    for chat in (USER, OTHER_USER):
        await sandbox.create_chat(chat)
    fault = {"method": "sendMessage", "count": 2, "kind": "retry_after", "retry_after": 30}
    await sandbox.control("POST", "faults", fault)
    for chat in (USER, OTHER_USER):
        assert (await gateway.enqueue({"chat_id": chat, "text": "throttled"}))[0] == 202
    for _ in range(200):  # two chats throttled within a second: the whole bot pauses
        code, report = await health_of(gateway)
        if report["paused_seconds"] > 0:
            break
        await asyncio.sleep(0.02)
    assert code == 200
    assert report["status"] == "degraded"
    assert 0 < report["paused_seconds"] <= 30
    assert any(r.startswith("Telegram paused sending to every chat") for r in report["reasons"])
