"""The webhook never jams: updates aiogram cannot validate are acknowledged, kept and handled as
far as they can be, and an update Telegram sends again is handled once, across restarts too."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.sandbox.keys import SANDBOX_STATE
from tests.conftest import BOT_ID, OTHER_USER, USER, Gateway, GatewayFactory, Sandbox, Workspace
from tests.test_twoway import Service, ask, routes_toml
from tests.test_webhook import wait_delivered

WEBHOOK = "/telegram/webhook"
POLL_QUESTION = "Which release goes out tonight?"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """An internal service on 127.0.0.1 that records every dispatch."""
    app = web.Application()
    svc = Service("")
    app.router.add_post("/{tail:.*}", svc.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    svc.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield svc
    finally:
        await runner.cleanup()


def sender(user_id: int = USER) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": "Ann"}


def poll_message(message_id: int, chat_id: int = USER) -> dict[str, Any]:
    """A message with a poll as Bot API < 9 sent it: its options lack `persistent_id`."""
    return {
        "message_id": message_id,
        "date": 1_700_000_000,
        "chat": {"id": chat_id, "type": "private"},
        "from": sender(chat_id),
        "poll": {
            "id": "5001",
            "question": POLL_QUESTION,
            "options": [{"text": "api", "voter_count": 0}, {"text": "web", "voter_count": 0}],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        },
    }


def odd_command(message_id: int, text: str, user_id: int = USER) -> dict[str, Any]:
    """A command message aiogram refuses: its entity lacks `length`."""
    return {
        "message_id": message_id,
        "date": 1_700_000_000,
        "chat": {"id": user_id, "type": "private"},
        "from": sender(user_id),
        "text": text,
        "entities": [{"type": "bot_command", "offset": 0}],
    }


def push(sandbox: Sandbox, message: dict[str, Any]) -> int:
    """Queue a raw message update in the sandbox, as Telegram would send it; its update_id."""
    pending = (
        sandbox.app[SANDBOX_STATE]
        .bot(BOT_ID)
        .updates.push("message", message, message["chat"]["id"])
    )
    assert pending is not None
    return pending.update_id


async def post_update(gateway: Gateway, update: dict[str, Any]) -> int:
    """POST an update to the gateway's webhook with the secret, as Telegram does."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": gateway.config.secret_token.reveal()}
    async with gateway.http.post(gateway.url + WEBHOOK, json=update, headers=headers) as resp:
        await resp.read()
        return resp.status


async def metric(gateway: Gateway, name: str) -> float:
    async with gateway.http.get(f"{gateway.url}/metrics", headers=gateway.auth) as resp:
        text = await resp.text()
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(values[0]) if values else 0.0


def updates_cli(
    workspace: Workspace, sandbox: Sandbox, *args: str
) -> subprocess.CompletedProcess[str]:
    """`gateway updates list ...` in the workspace, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_SERVER_HOST": workspace.host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{workspace.host}:8443",
            "GATEWAY_TELEGRAM_API_BASE": sandbox.url,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway", "updates", "list", *args],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_a_poll_without_persistent_id_does_not_hold_back_the_chat(
    gateway: Gateway, sandbox: Sandbox, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    poll_id = push(sandbox, poll_message(9001))
    await sandbox.say("/help")  # behind the poll in the same chat
    [answer] = await sandbox.wait_messages(USER, 1)
    assert "Telegram Gateway" in answer["text"]
    info = await wait_delivered(sandbox)
    assert not info.get("last_error_message")
    assert await metric(gateway, "gateway_updates_unparsed_total") == 1

    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "dead letter" in r.msg
    ]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert f"update {poll_id} " in line and "persistent_id" in line
    assert POLL_QUESTION not in caplog.text  # the update's content is not logged

    listed = await asyncio.to_thread(
        updates_cli, workspace, sandbox, "--failed", "--json", "--config", "config/gateway.toml"
    )  # read-only, while the gateway holds the database
    assert listed.returncode == 0, listed.stderr
    [failed] = json.loads(listed.stdout)
    assert failed["update_id"] == poll_id and failed["bot_id"] == BOT_ID
    assert failed["error"] == "message.poll.options.0.persistent_id: missing"
    assert failed["update"]["message"]["poll"]["question"] == POLL_QUESTION
    assert failed["handled"] == f"handled as a reduced message from user {USER} in chat {USER}"
    plain = await asyncio.to_thread(updates_cli, workspace, sandbox, "--failed")
    assert plain.returncode == 0, plain.stderr
    assert f"update {poll_id}: message.poll.options.0.persistent_id: missing" in plain.stdout
    assert POLL_QUESTION not in plain.stdout


async def test_an_invalid_message_with_a_routed_command_still_dispatches(
    gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    env = {"GATEWAY_TELEGRAM_REFUSAL_TEXT": "Sorry, this bot is private."}
    async with gateway_factory(env, toml=routes_toml(service)) as gw:
        await sandbox.create_chat(OTHER_USER)  # the stranger has started the bot
        push(sandbox, odd_command(9101, "/deploy api v1.2"))
        push(sandbox, odd_command(9102, "/deploy api", user_id=OTHER_USER))
        [call] = await service.wait_calls(1)
        payload = call["body"]
        assert payload["command"] == "deploy" and payload["args"] == ["api", "v1.2"]
        assert payload["user"]["id"] == USER and payload["chat"]["id"] == USER
        assert payload["message_id"] == 9101
        [refusal] = await sandbox.wait_messages(OTHER_USER, 1)  # strangers: the usual refusal
        assert refusal["text"] == "Sorry, this bot is private."
        await wait_delivered(sandbox)
        assert await metric(gw, "gateway_updates_unparsed_total") == 2
    assert len(service.calls) == 1


async def test_an_update_sent_again_is_handled_once_across_restarts(
    gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    deploy = {"update_id": 500, "message": {**odd_command(77, "/deploy api"), "entities": []}}

    async def marker(gw: Gateway, update_id: int, calls: int) -> None:
        """Another /deploy in the same chat: dispatches queue per chat, so once the marker is
        dispatched, any duplicate queued before it would have been too."""
        text = f"/deploy marker{update_id}"
        update = {
            "update_id": update_id,
            "message": {**odd_command(update_id, text), "entities": []},
        }
        assert await post_update(gw, update) == 200
        await service.wait_calls(calls)
        assert service.calls[-1]["body"]["text"] == text

    async with gateway_factory(toml=routes_toml(service)) as gw:
        statuses = await asyncio.gather(*(post_update(gw, deploy) for _ in range(5)))
        assert statuses == [200] * 5
        assert await post_update(gw, deploy) == 200
        await marker(gw, 501, 2)
        assert await metric(gw, "gateway_updates_repeated_total") >= 1
    async with gateway_factory(toml=routes_toml(service)) as gw:  # same SQLite file
        assert await post_update(gw, deploy) == 200
        await marker(gw, 502, 3)
        assert await metric(gw, "gateway_updates_repeated_total") == 1
    texts = [call["body"]["text"] for call in service.calls]
    assert texts == ["/deploy api", "/deploy marker501", "/deploy marker502"]


async def test_the_same_id_with_new_content_is_a_new_update(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """Update ids can restart (a bot silent for a week, a restarted sandbox): only the same
    content under the same id is a re-send."""
    await sandbox.create_chat(USER)
    first = {"update_id": 1, "message": {**odd_command(1, "/one"), "entities": []}}
    second = {"update_id": 1, "message": {**odd_command(2, "/two"), "entities": []}}
    marker = {"update_id": 2, "message": {**odd_command(3, "/three"), "entities": []}}
    for update in (first, first, second, marker):
        assert await post_update(gateway, update) == 200
    # Answers go out in order in the chat: once the marker's is there, all the others are.
    messages = await sandbox.wait_messages(USER, 3)
    assert [m["text"].split()[2] for m in messages] == ["/one.", "/two.", "/three."]


async def test_questions_are_answered_by_invalid_replies_and_taps(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    """A free-text answer and a button tap still settle their questions when aiogram refuses
    the update (here: an entity without `length`; a tapped message without its date)."""
    by_reply, message = await ask(gateway, sandbox, timeout_s=600)
    reply = {
        **odd_command(8001, "ship it"),
        "reply_to_message": {**message, "chat": {"id": USER, "type": "private"}},
    }
    assert await post_update(gateway, {"update_id": 801, "message": reply}) == 200
    done = await gateway.command(by_reply, wait=10)
    assert done["status"] == "answered" and done["reply"]["answer"] == "ship it"

    code, answer = await gateway.enqueue(
        {
            "text": "Roll back?",
            "chat_id": USER,
            "expect_reply": {"buttons": [["Approve", "Reject"]]},
        }
    )
    assert code == 202, answer
    by_tap = answer["id"]
    for _ in range(100):  # a tap counts once the question is awaiting its answer
        if (await gateway.command(by_tap))["status"] == "awaiting_reply":
            break
        await asyncio.sleep(0.05)
    question = (await sandbox.wait_messages(USER, 2))[1]
    data = question["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    query = {
        "id": "q-802",
        "from": sender(),
        "chat_instance": "1",
        "data": data,
        "message": {"message_id": question["message_id"], "chat": {"id": USER}},
    }
    assert await post_update(gateway, {"update_id": 802, "callback_query": query}) == 200
    done = await gateway.command(by_tap, wait=10)
    assert done["status"] == "answered" and done["reply"]["answer"] == "Reject"
    assert await metric(gateway, "gateway_updates_unparsed_total") == 2


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": true}',
        b'{"update_id": 9223372036854775808}',
        b'{"update_id": 1.5}',
        b'{"message": {}}',
        b"[1]",
        b"{",
    ],
)
async def test_without_an_integer_update_id_it_is_still_400(gateway: Gateway, body: bytes) -> None:
    headers = {
        "X-Telegram-Bot-Api-Secret-Token": gateway.config.secret_token.reveal(),
        "Content-Type": "application/json",
    }
    async with gateway.http.post(gateway.url + WEBHOOK, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_update"


async def test_an_update_nobody_can_read_is_acknowledged_and_kept(
    gateway: Gateway, sandbox: Sandbox, workspace: Workspace
) -> None:
    for update in (
        {"update_id": 700, "message": "not an object"},
        {"update_id": 701, "message": {"message_id": 1, "chat": {"title": "no id"}}},
    ):
        assert await post_update(gateway, update) == 200
    assert await metric(gateway, "gateway_updates_unparsed_total") == 2
    listed = await asyncio.to_thread(updates_cli, workspace, sandbox, "--failed", "--json")
    assert listed.returncode == 0, listed.stderr
    failed = json.loads(listed.stdout)
    assert [f["update_id"] for f in failed] == [701, 700]
    assert all(f["handled"].startswith("not handled") for f in failed)


def test_the_cli_explains_a_missing_database(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_QUEUE_PATH"] = str(tmp_path / "nothing.db")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "updates", "list", "--failed"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no queue database at {tmp_path / 'nothing.db'}"


async def test_a_strangers_message_is_acknowledged_without_being_read(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Decided on the raw JSON: a stranger's message (no refusal text configured) is never
    validated, handled or stored — an invalid one is no dead letter, a re-send no repeat."""
    caplog.set_level(logging.INFO, logger="gateway.inbound")
    stranger = {"update_id": 700, "message": odd_command(700, "/deploy", user_id=OTHER_USER)}
    for _ in range(2):
        assert await post_update(gateway, stranger) == 200
    assert f"ignored message update 700 from user {OTHER_USER}: not allowed" in caplog.text
    assert await metric(gateway, "gateway_updates_unparsed_total") == 0
    assert await metric(gateway, "gateway_updates_repeated_total") == 0
    # The same message from the allowed user takes the full path: a dead letter, handled once.
    mine = {"update_id": 701, "message": odd_command(701, "/frobnicate")}
    for _ in range(2):
        assert await post_update(gateway, mine) == 200
    assert await metric(gateway, "gateway_updates_unparsed_total") == 1
    assert await metric(gateway, "gateway_updates_repeated_total") == 1
    async with gateway.http.get(f"{gateway.url}/metrics", headers=gateway.auth) as resp:
        assert 'gateway_webhook_updates_total{type="message"} 3.0' in await resp.text()
