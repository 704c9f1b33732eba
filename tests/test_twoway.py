"""Two-way: Telegram commands dispatched to a real local service, answers brought back through
the queue, and questions answered by tap, by reply, or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gateway.guards import SIGNATURE_HEADER, callback_key
from gateway.openapi_webhooks import DISPATCH, OUTCOME
from tests.conftest import BOT_ID, OTHER_USER, USER, Gateway, GatewayFactory, Sandbox, Workspace

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Service:
    """An internal service on 127.0.0.1: records every call, answers as the test says."""

    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    behaviour: Behaviour | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append(
            {
                "body": json.loads(body),
                "raw": body,
                "signature": request.headers.get(SIGNATURE_HEADER),
            }
        )
        if self.behaviour is None:
            return web.json_response({"text": "ok"})
        return await self.behaviour(request)

    async def wait_calls(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.calls


@pytest.fixture
async def service() -> AsyncIterator[Service]:
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


def routes_toml(service: Service, **extra: Any) -> str:
    options = "".join(f"{key} = {json.dumps(value)}\n" for key, value in extra.items())
    return (
        "[[routes]]\n"
        'command = "deploy"\n'
        f'url = "{service.url}/hooks/deploy"\n'
        'description = "Deploy a service: /deploy <service> <version>"\n'
        f"{options}"
    )


def verify(signature: str | None, body: bytes, key: str) -> bool:
    """What a service does with X-Gateway-Signature."""
    assert signature is not None
    fields = dict(part.split("=", 1) for part in signature.split(","))
    expected = hmac.new(key.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) <= 300
    return fresh and hmac.compare_digest(expected.hexdigest(), fields["v1"])


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> AsyncIterator[Gateway]:
    """The default gateway, but allowed to call back services on 127.0.0.1."""
    async with gateway_factory({"GATEWAY_SERVER_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32"}) as gw:
        yield gw


@pytest.fixture
async def deploy(
    gateway_factory: GatewayFactory, service: Service, sandbox: Sandbox
) -> AsyncIterator[Gateway]:
    """A gateway with /deploy routed to the service (3 attempts, 2 s timeout)."""
    async with gateway_factory(toml=routes_toml(service, timeout_s=2)) as gw:
        yield gw


async def test_answer_in_the_response_is_a_reply(
    deploy: Gateway, service: Service, sandbox: Sandbox, workspace: Workspace
) -> None:
    service.behaviour = lambda _: _json({"text": "Deploying <b>api</b> v1.2", "parse_mode": "HTML"})
    sent = await sandbox.say("/deploy api v1.2")
    [answer] = await sandbox.wait_messages(USER, 1)
    assert answer["text"] == "Deploying api v1.2"
    assert answer["reply_to_message_id"] == sent["message_id"]
    [call] = service.calls
    payload = call["body"]
    assert payload["command"] == "deploy" and payload["args"] == ["api", "v1.2"]
    assert payload["user"]["id"] == USER and payload["chat"]["id"] == USER
    assert payload["message_id"] == sent["message_id"] and isinstance(payload["date"], int)
    assert payload["id"].startswith("cmd_")
    assert set(DISPATCH["required"]) <= payload.keys()  # what the OpenAPI document promises
    key = (workspace.root / "config/secrets/route_deploy.key").read_text().strip()
    assert verify(call["signature"], call["raw"], key)
    assert not verify(call["signature"], call["raw"] + b" ", key)
    status = await deploy.command(payload["id"], wait=5)
    assert status["method"] == "dispatch" and status["status"] == "sent"


async def test_plain_text_answer_and_mention_form(
    deploy: Gateway, service: Service, sandbox: Sandbox
) -> None:
    service.behaviour = lambda _: _text("done, boss")
    await sandbox.say(f"/deploy@sandbox_{BOT_ID}_bot web")
    [answer] = await sandbox.wait_messages(USER, 1)
    assert answer["text"] == "done, boss"
    assert service.calls[0]["body"]["args"] == ["web"]


async def test_a_later_answer_through_reply_to(
    deploy: Gateway, service: Service, sandbox: Sandbox
) -> None:
    service.behaviour = lambda _: _status(202)
    sent = await sandbox.say("/deploy api")
    [call] = await service.wait_calls(1)
    dispatch_id = call["body"]["id"]
    done = await deploy.command(dispatch_id, wait=5)
    assert done["status"] == "sent" and done["result"]["http_status"] == 202
    code, answer = await deploy.enqueue({"text": "api is live", "reply_to": dispatch_id})
    assert code == 202, answer
    [message] = await sandbox.wait_messages(USER, 1)
    assert message["text"] == "api is live"
    assert message["reply_to_message_id"] == sent["message_id"]
    code, answer = await deploy.enqueue({"text": "x", "reply_to": "cmd_unknown"})
    assert code == 400 and answer["error"]["code"] == "unknown_dispatch"


async def test_a_failing_service_is_retried_then_the_user_is_told(
    deploy: Gateway, service: Service, sandbox: Sandbox
) -> None:
    service.behaviour = lambda _: _status(503)
    await sandbox.say("/deploy api")
    [answer] = await sandbox.wait_messages(USER, 1, timeout=20)
    assert answer["text"] == "deploy: the service did not answer (3 attempts)"
    assert len(service.calls) == 3
    status = await deploy.command(service.calls[0]["body"]["id"])
    assert status["status"] == "failed" and status["attempts"] == 3


async def test_a_slow_service_times_out(
    gateway_factory: GatewayFactory, service: Service, sandbox: Sandbox
) -> None:
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.json_response({"text": "too late"})

    service.behaviour = slow
    async with gateway_factory(toml=routes_toml(service, timeout_s=0.3, max_attempts=2)):
        await sandbox.say("/deploy api")
        [answer] = await sandbox.wait_messages(USER, 1, timeout=20)
    assert answer["text"] == "deploy: the service did not answer (2 attempts)"


async def test_a_refusing_service_is_not_retried(
    deploy: Gateway, service: Service, sandbox: Sandbox
) -> None:
    service.behaviour = lambda _: _status(404)
    await sandbox.say("/deploy nothing")
    [answer] = await sandbox.wait_messages(USER, 1)
    assert answer["text"] == "deploy: the service refused the command (HTTP 404)"
    assert len(service.calls) == 1


async def test_menu_help_and_who_may_use_a_route(
    gateway_factory: GatewayFactory, service: Service, sandbox: Sandbox
) -> None:
    async with gateway_factory(toml=routes_toml(service, allowed_users=[9999])):
        commands = await sandbox.bot_api("getMyCommands")
        assert {
            "command": "deploy",
            "description": "Deploy a service: /deploy <service> <version>",
        } in commands["result"]
        await sandbox.say("/deploy api")
        [refusal] = await sandbox.wait_messages(USER, 1)
        assert refusal["text"] == "/deploy is not available to you."
        await sandbox.say("/help")
        messages = await sandbox.wait_messages(USER, 2)
        assert "/deploy" not in messages[1]["text"]  # listed only for those who may use it
        await sandbox.say("/nosuch")
        messages = await sandbox.wait_messages(USER, 3)
        assert messages[2]["text"] == "Unknown command /nosuch. Send /help for the list."
    assert service.calls == []


async def test_help_lists_the_routes(deploy: Gateway, sandbox: Sandbox) -> None:
    await sandbox.say("/help")
    [answer] = await sandbox.wait_messages(USER, 1)
    assert "/deploy — Deploy a service: /deploy <service> <version>" in answer["text"]


# --- ask and wait --------------------------------------------------------------------------


async def ask(gw: Gateway, sandbox: Sandbox, **expect: Any) -> tuple[str, dict[str, Any]]:
    await sandbox.create_chat(USER)
    code, answer = await gw.enqueue(
        {"text": "Deploy api v1.2 to production?", "chat_id": USER, "expect_reply": expect}
    )
    assert code == 202, answer
    for _ in range(100):
        status = await gw.command(answer["id"])
        if status["status"] == "awaiting_reply":
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "awaiting_reply", status
    [message] = await sandbox.wait_messages(USER, 1)
    return answer["id"], message


async def tap(sandbox: Sandbox, message: dict[str, Any], label: str, user: int = USER) -> None:
    buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
    data = next(b["callback_data"] for b in buttons if b["text"] == label)
    body = {"user_id": user, "chat_id": USER, "message_id": message["message_id"], "data": data}
    await sandbox.control("POST", "callbacks", body)


async def test_approval_by_tap(
    gateway: Gateway, sandbox: Sandbox, service: Service, workspace: Workspace
) -> None:
    command_id, message = await ask(
        gateway,
        sandbox,
        buttons=[["Approve", "Reject"]],
        timeout_s=600,
        callback_url=f"{service.url}/approvals",
    )
    await tap(sandbox, message, "Approve")
    done = await gateway.command(command_id, wait=10)
    assert done["status"] == "answered"
    assert done["reply"]["answer"] == "Approve" and done["reply"]["by"]["id"] == USER
    [call] = await service.wait_calls(1)
    assert call["body"]["id"] == command_id and call["body"]["status"] == "answered"
    assert set(OUTCOME["required"]) <= call["body"].keys()
    secret = (workspace.root / "config/secrets/callback_secret.txt").read_text().strip()
    # Signed with the asking client's own key, not with the gateway's callback secret.
    assert verify(call["signature"], call["raw"], callback_key(secret, "tests"))
    assert not verify(call["signature"], call["raw"], secret)
    for _ in range(100):  # the keyboard is replaced by the choice and who made it
        [shown] = await sandbox.messages(USER)
        labels = [b["text"] for row in shown["reply_markup"]["inline_keyboard"] for b in row]
        if labels != ["Approve", "Reject"]:
            break
        await asyncio.sleep(0.05)
    assert labels[0].startswith("✅ Approve")
    callbacks = await sandbox.control("GET", f"bots/{BOT_ID}/callbacks")
    assert callbacks["callbacks"][0]["answer"]["text"] == "You chose: Approve"


async def test_approval_by_reply(gateway: Gateway, sandbox: Sandbox) -> None:
    command_id, message = await ask(gateway, sandbox, timeout_s=600)
    assert message["reply_markup"]["force_reply"] is True
    await sandbox.say("ship it", reply_to_message_id=message["message_id"])
    done = await gateway.command(command_id, wait=10)
    assert done["status"] == "answered" and done["reply"]["answer"] == "ship it"


async def test_no_answer_expires(gateway: Gateway, sandbox: Sandbox, service: Service) -> None:
    command_id, _ = await ask(
        gateway, sandbox, buttons=[["Yes"]], timeout_s=1, callback_url=f"{service.url}/cb"
    )
    done = await gateway.command(command_id, wait=10)
    assert done["status"] == "expired" and done["reply"]["answer"] is None
    [call] = await service.wait_calls(1)
    assert call["body"]["status"] == "expired"


async def test_a_strangers_tap_is_refused(
    workspace: Workspace, gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    workspace.write("config/secrets/allowed_user.txt", f"{USER}\n3333\n")
    async with gateway_factory() as gw:
        command_id, message = await ask(gw, sandbox, buttons=[["Approve"]], answerers=[3333])
        await tap(sandbox, message, "Approve", user=OTHER_USER)  # not allowed at all
        await tap(sandbox, message, "Approve", user=USER)  # allowed, but not an answerer
        for _ in range(100):
            callbacks = (await sandbox.control("GET", f"bots/{BOT_ID}/callbacks"))["callbacks"]
            if all(c["answer"] for c in callbacks):
                break
            await asyncio.sleep(0.05)
        assert [c["answer"]["text"] for c in callbacks] == ["Not yours to answer."] * 2
        assert all(c["answer"]["show_alert"] for c in callbacks)
        assert (await gw.command(command_id))["status"] == "awaiting_reply"


async def test_restart_between_question_and_tap(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    async with gateway_factory() as gw:
        command_id, message = await ask(gw, sandbox, buttons=[["Approve", "Reject"]])
    async with gateway_factory() as gw:
        await tap(sandbox, message, "Reject")
        done = await gw.command(command_id, wait=10)
    assert done["status"] == "answered" and done["reply"]["answer"] == "Reject"


async def test_bad_questions_get_a_400(gateway: Gateway) -> None:
    for expect, field_name in [
        ({"buttons": "Approve"}, "expect_reply.buttons"),
        ({"buttons": [["x" * 65]]}, "expect_reply.buttons"),
        ({"timeout_s": 0}, "expect_reply.timeout_s"),
        ({"callback_url": "ftp://x"}, "expect_reply.callback_url"),
        ({"callback_url": "http://[::1"}, "expect_reply.callback_url"),
        ({"callback_url": "http://x:99999/"}, "expect_reply.callback_url"),
        ({"answerers": ["ann"]}, "expect_reply.answerers"),
        ({"colour": 1}, "expect_reply.colour"),
    ]:
        code, answer = await gateway.enqueue({"text": "?", "chat_id": USER, "expect_reply": expect})
        assert code == 400 and answer["error"]["field"] == field_name, answer


async def _json(body: dict[str, Any]) -> web.StreamResponse:
    return web.json_response(body)


async def _text(body: str) -> web.StreamResponse:
    return web.Response(text=body)


async def _status(status: int) -> web.StreamResponse:
    return web.Response(status=status)
