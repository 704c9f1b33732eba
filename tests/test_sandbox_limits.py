"""Flood limits, fault injection, blocked users, migrated groups and the statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from sandbox_helpers import (
    BOT_ID,
    TOKEN,
    USER,
    SandboxClient,
    aiogram_bot,
    running_sandbox,
)

from gateway.sandbox.limits import Admission, FloodControl, FloodLimits, is_counted


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox() as client:  # Telegram's own limits: 30/s, 1/s, 20/min
        yield client


def test_windows_slide_exactly() -> None:
    flood = FloodControl(FloodLimits(global_per_second=2, chat_per_second=1, group_per_minute=3))
    assert isinstance(flood.admit(1, 10, now=100.0), Admission)
    assert flood.admit(1, 10, now=100.4) == pytest.approx(0.6)  # chat: 1 per 1 s
    assert isinstance(flood.admit(1, 11, now=100.5), Admission)
    assert flood.admit(1, 12, now=100.9) == pytest.approx(0.1)  # global: 2 per 1 s
    assert isinstance(flood.admit(1, 12, now=101.0), Admission)  # 100.0 left the window
    assert isinstance(flood.admit(2, 12, now=101.0), Admission)  # another bot, own windows
    for t in (200.0, 201.0, 202.0):
        assert isinstance(flood.admit(1, -5, now=t), Admission)
    assert flood.admit(1, -5, now=203.0) == pytest.approx(57.0)  # group: 3 per 60 s
    assert isinstance(flood.admit(1, -5, now=260.0), Admission)


def test_fractional_rates_and_counted_methods() -> None:
    flood = FloodControl(
        FloodLimits(global_per_second=100, chat_per_second=0.5, group_per_minute=20)
    )
    assert isinstance(flood.admit(1, 7, now=0.0), Admission)
    assert flood.admit(1, 7, now=1.5) == pytest.approx(0.5)  # one per 2 s
    admission = flood.admit(1, 7, now=2.0)
    assert isinstance(admission, Admission) and admission.chat_last_second == 1
    assert is_counted("sendmessage") and is_counted("sendphoto") and is_counted("editmessagetext")
    assert not is_counted("sendchataction") and not is_counted("deletemessage")
    with pytest.raises(ValueError, match="group_per_minute"):
        FloodLimits(global_per_second=1, chat_per_second=1, group_per_minute=0)


async def test_a_second_message_in_a_second_is_429(box: SandboxClient) -> None:
    await box.say("/start")
    await box.result("sendMessage", chat_id=USER, text="one")
    url = f"{box.base}/bot{TOKEN}/sendMessage"
    async with box.http.post(url, json={"chat_id": USER, "text": "two"}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert await resp.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
    async with aiogram_bot(box.base) as bot:
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(USER, "three")
    assert caught.value.retry_after == 1
    assert [m["text"] for m in await box.sent(USER)] == ["one"]


async def test_validation_errors_do_not_count(box: SandboxClient) -> None:
    await box.say("/start")
    status, _ = await box.api("sendMessage", chat_id=USER, text="<x>", parse_mode="HTML")
    assert status == 400
    await box.result("sendMessage", chat_id=USER, text="counted")


async def test_group_and_global_limits_and_runtime_changes(box: SandboxClient) -> None:
    limits = await box.control("PUT", "limits", {"chat_per_second": 100, "group_per_minute": 2})
    assert limits == {
        "global_per_second": 30,
        "chat_per_second": 100,
        "group_per_minute": 2,
        "paid_per_second": 1000,
    }
    await box.control("POST", "chats", {"chat_id": -42, "type": "group", "bot_id": BOT_ID})
    await box.result("sendMessage", chat_id=-42, text="1")
    await box.result("sendMessage", chat_id=-42, text="2")
    status, body = await box.api("sendMessage", chat_id=-42, text="3")
    assert status == 429 and 59 <= body["parameters"]["retry_after"] <= 60
    await box.control("PUT", "limits", {"global_per_second": 3})
    for user in (1, 2, 3, 4):
        await box.say("/start", user_id=user)
    await box.result("sendMessage", chat_id=1, text="a")
    status, body = await box.api("sendMessage", chat_id=2, text="b")  # 2 group + 1 in 1 s
    assert (status, body["parameters"]) == (429, {"retry_after": 1})
    assert await box.control("GET", "limits") == {
        "global_per_second": 3,
        "chat_per_second": 100,
        "group_per_minute": 2,
        "paid_per_second": 1000,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"global_per_second": 0},
        {"chat_per_second": -1},
        {"group_per_minute": 1.5},
        {"group_per_minute": "20"},
        {"chat_per_second": True},
        {"per_hour": 5},
        [],
    ],
)
async def test_bad_limits_are_400(box: SandboxClient, body: object) -> None:
    answer = await box.control("PUT", "limits", body, status=400)
    assert isinstance(answer["error"], str)
    assert (await box.control("GET", "limits"))["global_per_second"] == 30


async def test_faults(box: SandboxClient) -> None:
    await box.say("/start")
    await box.control(
        "POST", "faults", {"method": "sendMessage", "count": 1, "kind": "server_error"}
    )
    await box.control(
        "POST", "faults", {"method": "SENDMESSAGE", "kind": "server_error", "status": 502}
    )
    await box.control(
        "POST", "faults", {"method": "sendMessage", "kind": "retry_after", "retry_after": 7}
    )
    await box.control("POST", "faults", {"method": "sendMessage", "kind": "drop"})
    assert len((await box.control("GET", "faults"))["faults"]) == 4
    async with aiogram_bot(box.base) as bot:
        with pytest.raises(TelegramServerError, match="Internal Server Error"):
            await bot.send_message(USER, "x")
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(USER, "x")
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(USER, "x")
        assert caught.value.retry_after == 7
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(USER, "x")
        assert (await bot.get_me()).id == BOT_ID  # other methods were never affected
        await bot.send_message(USER, "finally")
    assert [m["text"] for m in await box.sent(USER)] == ["finally"]
    await box.control("POST", "faults", {"method": "*", "count": 3})
    assert (await box.control("DELETE", "faults")) == {"faults": []}
    assert (await box.result("getMe"))["id"] == BOT_ID


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"method": "sendMessage", "kind": "explode"},
        {"method": "sendMessage", "count": 0},
        {"method": "sendMessage", "status": 418},
        {"method": "sendMessage", "kind": "retry_after", "retry_after": "soon"},
    ],
)
async def test_bad_faults_are_400(box: SandboxClient, body: object) -> None:
    await box.control("POST", "faults", body, status=400)


async def test_blocked_and_deactivated_users(box: SandboxClient) -> None:
    await box.say("/start")
    await box.control("POST", f"users/{USER}/block", {"bot_id": BOT_ID})
    async with aiogram_bot(box.base) as bot:
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(USER, "hello?")
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_chat_action(USER, "typing")
        updates = await bot.get_updates()
        member = updates[-1].my_chat_member
        assert member is not None and member.new_chat_member.status == "kicked"
        await box.control("POST", f"users/{USER}/unblock")
        await bot.send_message(USER, "welcome back")
        await box.control("POST", f"users/{USER}/deactivate")
        with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
            await bot.send_message(USER, "anyone?")
    await box.control("POST", "users/5555/block", status=404)


async def test_a_kicked_bot_is_forbidden(box: SandboxClient) -> None:
    await box.control("POST", "chats", {"chat_id": -77, "type": "group", "bot_id": BOT_ID})
    await box.control("POST", "chats/-77/kick")
    status, body = await box.api("sendMessage", chat_id=-77, text="hi")
    assert (status, body["description"]) == (403, "Forbidden: bot was kicked from the group chat")
    await box.control("POST", "chats/-77/add")
    await box.result("sendMessage", chat_id=-77, text="hi")


async def test_a_migrated_group_points_to_its_supergroup(box: SandboxClient) -> None:
    await box.control("POST", "chats", {"chat_id": -4000, "type": "group", "bot_id": BOT_ID})
    answer = await box.control("POST", "chats/-4000/migrate")
    new_id = answer["migrate_to_chat_id"]
    assert str(new_id).startswith("-100")
    async with aiogram_bot(box.base) as bot:
        with pytest.raises(TelegramMigrateToChat) as caught:
            await bot.send_message(-4000, "hi")
        assert caught.value.migrate_to_chat_id == new_id
        assert "group chat was upgraded to a supergroup chat" in caught.value.message
        sent = await bot.send_message(new_id, "hi")
        assert sent.chat.type == "supergroup"
        notes = [u.message for u in await bot.get_updates()]
    assert [(n.migrate_to_chat_id, n.migrate_from_chat_id) for n in notes if n] == [
        (new_id, None),
        (None, -4000),
    ]
    await box.control("POST", f"chats/{new_id}/migrate", status=400)
    status, body = await box.api("deleteMessage", chat_id=-4000, message_id=1)
    assert (status, body["parameters"]) == (400, {"migrate_to_chat_id": new_id})


async def test_statistics(box: SandboxClient) -> None:
    await box.control("PUT", "limits", {"chat_per_second": 2})
    await box.say("/start")
    await box.say("/start", user_id=2)
    for chat, text in [(USER, "a"), (USER, "b"), (USER, "c"), (2, "d")]:
        await box.api("sendMessage", chat_id=chat, text=text)
    await box.api("sendChatAction", chat_id=USER, action="typing")
    await box.api("getMe")
    stats = await box.control("GET", "stats")
    assert stats["calls"] == {"getMe": 1, "sendChatAction": 1, "sendMessage": 4}
    assert stats["responses"] == {"200": 5, "429": 1}
    assert (stats["flood_429"], stats["too_many_requests"]) == (1, 1)
    assert stats["total_sends"] == 3
    assert stats["max_chat_per_second"] == 2
    assert stats["max_global_per_second"] == 3
    assert stats["max_group_per_minute"] == 0
    reset = await box.control("DELETE", "stats")
    assert reset["calls"] == {} and reset["total_sends"] == 0
