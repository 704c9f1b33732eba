"""A real Prometheus Alertmanager posting to an inlet: one message per alert group, edited
through the alerts' life, and silence buttons that create and expire real silences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOT_ID, USER, Gateway, GatewayFactory, Sandbox, Workspace
from tests.inlet_helpers import (
    SECRET,
    Alertmanager,
    alert,
    eventually,
    free_port,
    inlet_toml,
    running_alertmanager,
)

CHAT = -1001234567890

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def strikes(message: dict[str, Any]) -> list[str]:
    """The struck-through parts of a message (entity offsets count UTF-16 code units)."""
    text = message["text"].encode("utf-16-le")
    return [
        text[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
        for e in message["entities"]
        if e["type"] == "strikethrough"
    ]


def labels(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


async def tap(sandbox: Sandbox, message: dict[str, Any], label: str, user: int = USER) -> None:
    button = next(
        b for row in message["reply_markup"]["inline_keyboard"] for b in row if b["text"] == label
    )
    body = {
        "user_id": user,
        "chat_id": CHAT,
        "message_id": message["message_id"],
        "data": button["callback_data"],
    }
    await sandbox.control("POST", "callbacks", body)


async def callback_answers(sandbox: Sandbox) -> list[str]:
    found = await sandbox.control("GET", f"bots/{BOT_ID}/callbacks")
    return [c["answer"]["text"] for c in found["callbacks"] if c.get("answer")]


@pytest.fixture
async def gateway_am(
    gateway_factory: GatewayFactory, sandbox: Sandbox, workspace: Workspace, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, Alertmanager, str]]:
    """A gateway with an Alertmanager inlet, and an Alertmanager posting to it."""
    await sandbox.create_chat(CHAT, "supergroup")
    workspace.write("config/secrets/inlet_prod.key", SECRET)
    am_port = free_port()  # the gateway's config names it before Alertmanager starts
    toml = inlet_toml(
        "prod", "alertmanager", [CHAT], alertmanager_url=f"http://127.0.0.1:{am_port}"
    )
    async with (
        gateway_factory(toml=toml) as gw,
        running_alertmanager(tmp_path, gw, "prod", port=am_port) as am,
    ):
        yield gw, am, f"http://127.0.0.1:{am_port}"


async def test_an_alert_groups_life_in_one_message(
    gateway_am: tuple[Gateway, Alertmanager, str], sandbox: Sandbox
) -> None:
    _, am, _ = gateway_am
    await am.post_alerts([alert("HighLoad", instance="a"), alert("HighLoad", instance="b")])
    [message] = await eventually(
        lambda: sandbox.messages(CHAT), lambda found: len(found) == 1 and "x2" in found[0]["text"]
    )
    assert "FIRING x2" in message["text"] and "HighLoad" in message["text"]
    assert labels(message) == ["🔕 Silence 1h", "🔕 Silence 24h", "👀 Ack"]

    # One alert resolves: the same message, that alert struck through.
    await am.post_alerts([alert("HighLoad", resolved=True, instance="a")])
    [message] = await eventually(
        lambda: sandbox.messages(CHAT), lambda found: bool(found and strikes(found[0]))
    )
    assert strikes(message) == ["HighLoad: HighLoad on a"]
    assert "FIRING" in message["text"] and "x2" not in message["text"]

    # The whole group resolves: the message says so, loses its buttons, and a reply tells.
    await am.post_alerts([alert("HighLoad", resolved=True, instance="b")])
    first, reply = await eventually(lambda: sandbox.messages(CHAT), lambda found: len(found) == 2)
    assert first["message_id"] == message["message_id"]
    assert "RESOLVED" in first["text"] and not labels(first)
    assert reply["text"] == "✅ Resolved: HighLoad"
    assert reply["reply_to_message_id"] == first["message_id"]


async def test_silence_and_unsilence_from_telegram(
    gateway_am: tuple[Gateway, Alertmanager, str], sandbox: Sandbox
) -> None:
    _, am, _ = gateway_am
    await am.post_alerts([alert("DiskFull", instance="db1")])
    [message] = await eventually(lambda: sandbox.messages(CHAT), lambda found: len(found) == 1)
    await tap(sandbox, message, "🔕 Silence 1h")
    [message] = await eventually(
        lambda: sandbox.messages(CHAT), lambda found: "Silenced by" in found[0]["text"]
    )
    assert labels(message) == ["🔔 Unsilence"]
    silences = await eventually(
        am.silences, lambda found: any(s["status"]["state"] == "active" for s in found)
    )
    [silence] = silences
    assert {"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True} in (
        silence["matchers"]
    )
    assert "Telegram" in silence["createdBy"] and "telegram-gateway" in silence["comment"]
    answers = await eventually(lambda: callback_answers(sandbox), bool)
    assert answers[0].startswith("Silenced until")

    await tap(sandbox, message, "🔔 Unsilence")
    await eventually(am.silences, lambda found: found[0]["status"]["state"] == "expired")
    [message] = await eventually(
        lambda: sandbox.messages(CHAT), lambda found: "Silenced by" not in found[0]["text"]
    )
    assert "🔕 Silence 1h" in labels(message)

    await tap(sandbox, message, "👀 Ack")
    [message] = await eventually(
        lambda: sandbox.messages(CHAT), lambda found: "Acknowledged by" in found[0]["text"]
    )
    assert "👀 Ack" not in labels(message)
