"""Paid broadcast (Bot API 7.11) end to end: the gateway's two tiers against the sandbox's.

The rates are scaled down (free 5/s, paid 50/s) so each test takes seconds; the rules are
Telegram's: only sends above the free rate carry `allow_paid_broadcast`, each costs 0.1 Star,
per-chat limits do not change, and the gateway never sees a 429.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.sandbox import SandboxSettings
from tests.conftest import BOT_ID, TOKEN, Gateway, GatewayFactory, Sandbox
from tests.media_helpers import png

FREE, PAID = 5, 50
PAID_ENV = {
    "GATEWAY_FLOOD_GLOBAL_PER_SECOND": str(FREE),
    "GATEWAY_FLOOD_PAID_BROADCAST": "true",
    "GATEWAY_FLOOD_PAID_PER_SECOND": str(PAID),
}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=FREE, chat_per_second=1, paid_per_second=PAID)


async def enqueue_texts(gw: Gateway, chats: list[int], per_chat: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + per_chat):
        for chat in chats:
            status, answer = await gw.enqueue({"chat_id": chat, "text": f"{chat}-{n}"})
            assert status == 202, answer
            ids.append(answer["id"])
    return ids


async def all_sent(gw: Gateway, ids: list[str], timeout: float = 30.0) -> None:
    for command_id in ids:
        command = await gw.command(command_id, wait=timeout)
        assert command["status"] == "sent", command


async def in_order(sandbox: Sandbox, chats: list[int], per_chat: int) -> None:
    for chat in chats:
        texts = [m["text"] for m in await sandbox.messages(chat)]
        assert texts == [f"{chat}-{n}" for n in range(per_chat)], chat


async def metrics(gw: Gateway) -> dict[str, float]:
    async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
        text = await resp.text()
    found = re.findall(r"^(gateway_paid_\w+) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def stars(sandbox: Sandbox) -> dict[str, Any]:
    data: dict[str, Any] = await sandbox.control("GET", f"stars?bot_id={BOT_ID}")
    return data


async def test_only_sends_above_the_free_rate_are_paid(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    chats = list(range(1001, 1041))
    for chat in chats:
        await sandbox.create_chat(chat)
    async with gateway_factory(PAID_ENV) as gw:
        # As many as the free tier holds: nothing is paid for.
        first = await enqueue_texts(gw, chats[:FREE], 1)
        await all_sent(gw, first)
        assert (await stars(sandbox))["paid_messages"] == 0
        # Then 40 chats x 2: beyond the free 5/s, so some go paid; per-chat 1/s still holds.
        ids = await enqueue_texts(gw, chats[FREE:], 1)
        ids += await enqueue_texts(gw, chats, 1, start=1)
        await all_sent(gw, ids)
        counted = await metrics(gw)
    account = await stars(sandbox)
    stats = await sandbox.control("GET", "stats")
    assert stats["too_many_requests"] == 0
    assert stats["max_free_per_second"] <= FREE and stats["max_chat_per_second"] == 1
    assert 0 < account["paid_messages"] < len(chats) * 2 - FREE
    assert [send["paid"] for send in account["recent_sends"][:FREE]] == [False] * FREE
    assert counted["gateway_paid_sends_total"] == account["paid_messages"] == stats["paid_sends"]
    assert counted["gateway_paid_stars_total"] == pytest.approx(account["stars_spent"])
    assert account["stars_spent"] == pytest.approx(account["paid_messages"] / 10)
    assert counted["gateway_paid_broadcast_available"] == 1
    await in_order(sandbox, chats, 2)


async def test_with_paid_broadcast_off_nothing_is_paid(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    chats = list(range(2001, 2013))
    for chat in chats:
        await sandbox.create_chat(chat)
    env = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": str(FREE)}
    async with gateway_factory(env) as gw:
        await all_sent(gw, await enqueue_texts(gw, chats, 1))
        counted = await metrics(gw)
    stats = await sandbox.control("GET", "stats")
    assert stats["too_many_requests"] == 0 and stats["paid_sends"] == 0
    assert (await stars(sandbox))["paid_messages"] == 0
    assert counted["gateway_paid_sends_total"] == 0
    assert counted["gateway_paid_broadcast_available"] == 0


async def test_when_the_stars_run_out_everything_is_still_delivered(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    chats = list(range(3001, 3016))
    for chat in chats:
        await sandbox.create_chat(chat)
    await sandbox.control("PUT", "stars", {"bot_id": BOT_ID, "balance": 0.4})  # 4 messages
    async with gateway_factory(PAID_ENV) as gw:
        ids = await enqueue_texts(gw, chats, 2)
        await all_sent(gw, ids)
        counted = await metrics(gw)
        async with gw.http.get(f"{gw.url}/healthz") as resp:
            health = await resp.json()
    account = await stars(sandbox)
    stats = await sandbox.control("GET", "stats")
    assert stats["too_many_requests"] == 0
    assert account["refused"] >= 1 and account["balance"] >= 0
    assert account["paid_messages"] <= 4
    assert counted["gateway_paid_sends_total"] == account["paid_messages"]
    assert counted["gateway_paid_broadcast_fallbacks_total"] == 1
    assert counted["gateway_paid_broadcast_available"] == 0
    assert health["status"] == "degraded"
    assert any("paid broadcast unavailable" in reason for reason in health["reasons"])
    await in_order(sandbox, chats, 2)


async def test_an_album_is_paid_as_a_whole(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    chats = list(range(4001, 4005))
    for chat in chats:
        await sandbox.create_chat(chat)
    env = {**PAID_ENV, "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "2"}
    await sandbox.control("PUT", "limits", {"global_per_second": 2})
    async with gateway_factory(env) as gw:
        ids = []
        for chat in chats:
            form = aiohttp.FormData()
            payload = {
                "chat_id": chat,
                "media": [
                    {"type": "photo", "media": "attach://a"},
                    {"type": "photo", "media": "attach://b"},
                ],
            }
            form.add_field("payload", json.dumps(payload), content_type="application/json")
            for name in ("a", "b"):
                form.add_field(name, png(salt=chat), filename=f"{name}.png")
            url = f"{gw.url}/enqueue_command"
            async with gw.http.post(url, data=form, headers=gw.auth) as resp:
                assert resp.status == 202, await resp.text()
                ids.append((await resp.json())["id"])
        await all_sent(gw, ids)
        counted = await metrics(gw)
    account = await stars(sandbox)
    stats = await sandbox.control("GET", "stats")
    assert stats["too_many_requests"] == 0
    assert [send["messages"] for send in account["recent_sends"]] == [2] * len(chats)
    assert account["recent_sends"][0]["paid"] is False  # the free tier first
    assert account["paid_messages"] % 2 == 0  # each paid album pays for both its photos
    assert counted["gateway_paid_sends_total"] == account["paid_messages"]


# --- The sandbox's side ----------------------------------------------------------------------


async def raw_control(
    sandbox: Sandbox, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with sandbox.http.request(method, f"{sandbox.url}/sandbox/{path}", json=body) as resp:
        return resp.status, await resp.json()


async def test_the_sandbox_charges_flagged_sends_and_refuses_without_stars(
    sandbox: Sandbox,
) -> None:
    await sandbox.control("PUT", "limits", {"global_per_second": 1, "paid_per_second": 3})
    for chat in (11, 12, 13, 14):
        await sandbox.create_chat(chat)
    assert (await sandbox.bot_api("sendMessage", chat_id=11, text="free"))["ok"]
    over = await sandbox.bot_api("sendMessage", chat_id=12, text="over")
    assert over["error_code"] == 429  # above the free rate without the flag
    await sandbox.control("PUT", "stars", {"balance": 0.1})
    paid = await sandbox.bot_api("sendMessage", chat_id=12, text="x", allow_paid_broadcast=True)
    assert paid["ok"]
    refused = await sandbox.bot_api("sendMessage", chat_id=13, text="y", allow_paid_broadcast=True)
    assert (refused["error_code"], refused["description"]) == (
        400,
        "Bad Request: BALANCE_TOO_LOW",
    )
    account = await stars(sandbox)
    assert (account["balance"], account["paid_messages"], account["refused"]) == (0, 1, 1)
    assert account["stars_spent"] == pytest.approx(0.1)
    assert [s["paid"] for s in account["recent_sends"]] == [False, True]
    await sandbox.control("PUT", "stars", {"balance": 100})
    assert (await sandbox.bot_api("sendMessage", chat_id=13, text="y2", allow_paid_broadcast=True))[
        "ok"
    ]
    # The paid ceiling counts every send: 3 in this second already.
    ceiling = await sandbox.bot_api("sendMessage", chat_id=14, text="z", allow_paid_broadcast=True)
    assert ceiling["error_code"] == 429
    # Paid broadcast off: the flag changes nothing.
    await sandbox.control("PUT", "limits", {"paid_per_second": 0})
    off = await sandbox.bot_api("sendMessage", chat_id=14, text="z", allow_paid_broadcast=True)
    assert off["error_code"] == 429


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("limits", {"paid_per_second": -1}, "paid_per_second must be 0 (off) or a positive"),
        ("limits", {"paid_per_second": "fast"}, "paid_per_second must be a number"),
        ("stars", {"balance": -1}, "non-negative number of Stars"),
        ("stars", {"balance": 0.05}, "in steps of 0.1"),
        ("stars", {"balance": "lots"}, "'balance' must be a number of Stars"),
        ("stars", {}, "'balance' is required"),
        ("stars", {"balance": 1, "colour": 1}, "unknown field(s): colour"),
    ],
)
async def test_sandbox_control_mistakes_are_400s(
    sandbox: Sandbox, path: str, body: dict[str, Any], message: str
) -> None:
    await sandbox.create_chat(1)
    if path == "stars":
        body = {"bot_id": BOT_ID, **body}
    status, answer = await raw_control(sandbox, "PUT", path, body)
    assert status == 400 and message in answer["error"], answer


@pytest.mark.timeout(120)
def test_the_sandbox_command_takes_the_paid_rate(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sandbox", "--port", str(port), "--paid-per-second", "7"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limits = asyncio.run(wait_for_limits(f"http://127.0.0.1:{port}"))
        assert limits["paid_per_second"] == 7
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "sandbox", "--paid-per-second", "-3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0 and "paid_per_second" in bad.stdout + bad.stderr


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_limits(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{base}/sandbox/limits") as resp:
                    data: dict[str, Any] = await resp.json()
                    return data
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("the sandbox did not start")


# --- Configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_FLOOD_PAID_PER_SECOND": "1001"}, "[flood] paid_per_second must be between 1"),
        ({"GATEWAY_FLOOD_PAID_PER_SECOND": "0"}, "[flood] paid_per_second must be between 1"),
        (
            {"GATEWAY_FLOOD_PAID_PER_SECOND": "lots"},
            "GATEWAY_FLOOD_PAID_PER_SECOND must be a number",
        ),
        (
            {"GATEWAY_FLOOD_PAID_BROADCAST": "maybe"},
            "GATEWAY_FLOOD_PAID_BROADCAST must be true or false",
        ),
        (
            {"GATEWAY_FLOOD_PAID_BROADCAST": "true", "GATEWAY_FLOOD_PAID_PER_SECOND": "30"},
            "[flood] paid_per_second (30) must be above global_per_second (30)",
        ),
    ],
)
def test_paid_broadcast_settings_are_checked(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env, base_dir=tmp_path)
    assert message in str(info.value)


def test_paid_broadcast_settings_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/gateway.toml").write_text(
        "[flood]\npaid_broadcast = true\npaid_per_second = 500\n"
    )
    flood = load_config(None, {}, base_dir=tmp_path).flood
    assert (flood.paid_broadcast, flood.paid_per_second) == (True, 500)
    assert TOKEN  # the tests' bot is the sandbox's only bot
