"""Security: API clients, signatures, rate limits, webhook hardening, and the attack table.

Every attack in the table is sent to a live gateway over TLS; each must get its expected status
with nothing enqueued and nothing sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.clients import add_client, revoke_client
from gateway.guards import SIGNATURE_HEADER, sign
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox, Workspace

WEBHOOK = "/telegram/webhook"
TELEGRAM_IP = "149.154.167.99"


@dataclass
class Target:
    """The table's gateway and the credentials of its clients."""

    gw: Gateway
    sandbox: Sandbox
    tokens: dict[str, str]
    signing_secret: str
    foreign_command: str
    replayed: tuple[bytes, str]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def request(
        self, method: str, path: str, *, headers: dict[str, str], data: bytes | None = None
    ) -> aiohttp.ClientResponse:
        async with self.gw.http.request(
            method, self.gw.url + path, headers=headers, data=data
        ) as resp:
            await resp.read()
            return resp

    def accepted(self) -> float:
        """Commands accepted so far (all methods)."""
        metric = self.gw.app[keys.METRICS].accepted
        return sum(
            s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
        )

    def updates(self) -> float:
        metric = self.gw.app[keys.METRICS].updates
        return sum(
            s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
        )


def _total(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


JSON = {"Content-Type": "application/json"}
NESTED = b'{"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
GOOD_BODY = json.dumps({"text": "hello", "chat_id": USER}).encode()


def update_body(text: str = "/help") -> bytes:
    message = {
        "message_id": 1,
        "date": 1,
        "chat": {"id": USER, "type": "private"},
        "from": {"id": USER, "is_bot": False, "first_name": "A"},
        "text": text,
    }
    return json.dumps({"update_id": 99, "message": message}).encode()


Attack = Callable[[Target], Awaitable[aiohttp.ClientResponse]]


def enqueue_as(name: str | None, body: bytes = GOOD_BODY, **headers: str) -> Attack:
    async def attack(t: Target) -> aiohttp.ClientResponse:
        auth = t.bearer(name) if name else {}
        return await t.request(
            "POST", "/enqueue_command", headers={**JSON, **auth, **headers}, data=body
        )

    return attack


async def wrong_token(t: Target) -> aiohttp.ClientResponse:
    headers = {**JSON, "Authorization": "Bearer gwt_" + "A" * 43}
    return await t.request("POST", "/enqueue_command", headers=headers, data=GOOD_BODY)


async def foreign_command(t: Target) -> aiohttp.ClientResponse:
    return await t.request("GET", f"/commands/{t.foreign_command}", headers=t.bearer("ops"))


async def expired_signature(t: Target) -> aiohttp.ClientResponse:
    stale = int(time.time()) - 600
    signature = sign(t.signing_secret, GOOD_BODY, stale)
    headers = {**JSON, **t.bearer("signed"), SIGNATURE_HEADER: signature}
    return await t.request("POST", "/enqueue_command", headers=headers, data=GOOD_BODY)


async def forged_signature(t: Target) -> aiohttp.ClientResponse:
    signature = sign("not-the-secret-at-all", GOOD_BODY, int(time.time()))
    headers = {**JSON, **t.bearer("signed"), SIGNATURE_HEADER: signature}
    return await t.request("POST", "/enqueue_command", headers=headers, data=GOOD_BODY)


async def unsigned(t: Target) -> aiohttp.ClientResponse:
    headers = {**JSON, **t.bearer("signed")}
    return await t.request("POST", "/enqueue_command", headers=headers, data=GOOD_BODY)


async def replayed_signature(t: Target) -> aiohttp.ClientResponse:
    body, signature = t.replayed
    headers = {**JSON, **t.bearer("signed"), SIGNATURE_HEADER: signature}
    return await t.request("POST", "/enqueue_command", headers=headers, data=body)


def webhook(secret: str | None, source: str = TELEGRAM_IP, **extra: str) -> Attack:
    async def attack(t: Target) -> aiohttp.ClientResponse:
        headers = {**JSON, "X-Forwarded-For": source, **extra}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = (
                t.gw.config.secret_token.reveal() if secret == "right" else secret
            )
        return await t.request("POST", WEBHOOK, headers=headers, data=update_body())

    return attack


ATTACKS: list[tuple[str, Attack, int]] = [
    ("no token", enqueue_as(None), 401),
    ("wrong token", wrong_token, 401),
    ("revoked token", enqueue_as("revoked"), 401),
    ("basic auth instead of bearer", enqueue_as(None, Authorization="Basic dXNlcjpwYXNz"), 401),
    ("another client's command", foreign_command, 404),
    ("forbidden chat", enqueue_as("scoped", json.dumps({"text": "x", "chat_id": 9}).encode()), 403),
    (
        "forbidden chat by default recipients",
        enqueue_as("narrow", json.dumps({"text": "to everyone"}).encode()),
        403,
    ),
    (
        "forbidden method",
        enqueue_as(
            "scoped",
            json.dumps(
                {"method": "deleteMessage", "params": {"chat_id": USER, "message_id": 1}}
            ).encode(),
        ),
        403,
    ),
    ("missing signature", unsigned, 401),
    ("expired signature", expired_signature, 401),
    ("forged signature", forged_signature, 401),
    ("replayed signature", replayed_signature, 401),
    ("over the rate limit", enqueue_as("slow"), 429),
    ("wrong webhook secret", webhook("not-the-secret"), 401),
    ("missing webhook secret", webhook(None), 401),
    ("webhook from outside the allow-list", webhook("right", source="203.0.113.9"), 403),
    (
        "spoofed X-Forwarded-For behind no proxy",
        webhook("right", source=f"{TELEGRAM_IP}, 203.0.113.9"),
        403,
    ),
    ("oversized body", enqueue_as("ops", b'{"text": "' + b"x" * 40_000 + b'"}'), 413),
    ("malformed JSON", enqueue_as("ops", b'{"text": "x",'), 400),
    ("wrong content type", enqueue_as("ops", GOOD_BODY, **{"Content-Type": "text/plain"}), 415),
    (
        "deeply nested JSON",
        enqueue_as("ops", NESTED),
        400,
    ),
    ("huge integer", enqueue_as("ops", b'{"text": "x", "chat_id": ' + b"9" * 5000 + b"}"), 400),
    (
        "big integer chat id",
        enqueue_as("ops", b'{"text": "x", "chat_id": ' + b"9" * 30 + b"}"),
        400,
    ),
    ("invalid UTF-8", enqueue_as("ops", b'{"text": "\xff\xfe"}'), 400),
    ("NaN", enqueue_as("ops", b'{"text": "x", "chat_id": NaN}'), 400),
    ("webhook body not JSON", webhook("right", **{"Content-Type": "text/plain"}), 415),
]


@pytest.fixture
async def target(
    workspace: Workspace, gateway_factory: GatewayFactory, sandbox: Sandbox
) -> AsyncIterator[Target]:
    path = workspace.clients_file
    tokens = {"ops": workspace.token}
    tokens["scoped"], _ = add_client(path, "scoped", chats=[USER], methods=["sendMessage"])
    tokens["narrow"], _ = add_client(path, "narrow", chats=[USER])
    tokens["revoked"], _ = add_client(path, "revoked")
    revoke_client(path, "revoked")
    tokens["slow"], _ = add_client(path, "slow", rate_per_second=0.01)
    tokens["signed"], secret = add_client(path, "signed", signing=True)
    tokens["other"], _ = add_client(path, "other")
    assert secret is not None
    env = {
        "GATEWAY_SERVER_BODY_LIMIT": "32768",
        "GATEWAY_TELEGRAM_WEBHOOK_IP_ALLOWLIST": "true",
        "GATEWAY_TELEGRAM_TRUSTED_PROXIES": "127.0.0.0/8",
    }
    workspace.write("config/secrets/allowed_user.txt", f"{USER}\n3333\n")
    await sandbox.create_chat(USER)
    async with gateway_factory(env) as gw:
        t = Target(gw, sandbox, tokens, secret, "", (b"", ""))
        # Set-up traffic, before the measured part: a command of another client, one signed
        # request (to replay), and the slow client's only allowed call.
        code, answer = await gw.enqueue(
            {"text": "theirs", "chat_id": USER}, headers=t.bearer("other")
        )
        assert code == 202
        t.foreign_command = answer["id"]
        stamp = int(time.time())
        signature = sign(secret, GOOD_BODY, stamp)
        signed = {**JSON, **t.bearer("signed"), SIGNATURE_HEADER: signature}
        assert (
            await t.request("POST", "/enqueue_command", headers=signed, data=GOOD_BODY)
        ).status == 202
        t.replayed = (GOOD_BODY, signature)
        assert (await enqueue_as("slow")(t)).status == 202
        url = f"{gw.url}/commands/{t.foreign_command}?wait=10"
        async with gw.http.get(url, headers=t.bearer("other")) as resp:
            assert (await resp.json())["status"] == "sent"
        yield t


@pytest.mark.parametrize(("name", "attack", "status"), ATTACKS, ids=[a[0] for a in ATTACKS])
async def test_attack_table(target: Target, name: str, attack: Attack, status: int) -> None:
    accepted, updates = target.accepted(), target.updates()
    sends = (await target.sandbox.control("GET", "stats"))["total_sends"]
    response = await attack(target)
    assert response.status == status, name
    if status == 401 and "webhook" not in name:
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    if status == 429:
        assert int(response.headers["Retry-After"]) >= 1
    await asyncio.sleep(0.2)  # anything enqueued by mistake would be on its way by now
    assert target.accepted() == accepted, "something was enqueued"
    assert target.updates() == updates, "an update was processed"
    assert (await target.sandbox.control("GET", "stats"))["total_sends"] == sends, (
        "something was sent"
    )


async def test_error_bodies_say_what_was_refused(target: Target) -> None:
    response = await target.gw.http.post(
        target.gw.url + "/enqueue_command",
        json={"text": "x", "chat_id": 9},
        headers=target.bearer("scoped"),
    )
    error = (await response.json())["error"]
    assert response.status == 403
    assert error == {
        "code": "forbidden_chat",
        "message": "client 'scoped' may not send to chat 9",
        "field": "chat_id",
    }
    response.release()


async def test_signed_requests_and_allowed_webhook_sources_work(target: Target) -> None:
    body = json.dumps({"text": "signed hello", "chat_id": USER}).encode()
    headers = {
        **JSON,
        **target.bearer("signed"),
        SIGNATURE_HEADER: sign(target.signing_secret, body, int(time.time())),
    }
    assert (
        await target.request("POST", "/enqueue_command", headers=headers, data=body)
    ).status == 202
    response = await webhook("right")(target)
    assert response.status == 200
    assert target.updates() >= 1


async def test_token_changes_apply_without_restart(workspace: Workspace, gateway: Gateway) -> None:
    token, _ = add_client(workspace.clients_file, "late")
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(60):  # the file is watched every 2 s
        code, _ = await gateway.enqueue({"text": "hi", "chat_id": USER}, headers=headers)
        if code == 202:
            break
        await asyncio.sleep(0.1)
    assert code == 202
    revoke_client(workspace.clients_file, "late")
    for _ in range(60):
        code, _ = await gateway.enqueue({"text": "hi", "chat_id": USER}, headers=headers)
        if code == 401:
            break
        await asyncio.sleep(0.1)
    assert code == 401


async def test_rate_limited_client_recovers(
    workspace: Workspace, gateway_factory: GatewayFactory
) -> None:
    token, _ = add_client(workspace.clients_file, "bursty", rate_per_second=5)
    headers = {"Authorization": f"Bearer {token}"}
    async with gateway_factory() as gw:
        codes = [
            (await gw.enqueue({"text": "x", "chat_id": USER}, headers=headers))[0] for _ in range(8)
        ]
        assert codes[:5] == [202] * 5 and 429 in codes[5:]
        await asyncio.sleep(0.5)
        assert (await gw.enqueue({"text": "x", "chat_id": USER}, headers=headers))[0] == 202


async def test_metrics_and_status_need_a_token(gateway: Gateway) -> None:
    for path in ("/metrics", "/commands/cmd_x"):
        async with gateway.http.get(gateway.url + path) as resp:
            assert resp.status == 401
    async with gateway.http.get(gateway.url + "/healthz") as resp:
        assert resp.status == 200


def test_readable_key_can_be_allowed_with_a_warning(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.server import check_certificate

    (workspace.root / "certs/key.pem").chmod(0o644)
    config = workspace.config("http://127.0.0.1:1", {"GATEWAY_SERVER_KEY_PERMISSIONS": "warn"})
    check_certificate(config)
    assert "key_permissions" in caplog.text


def test_clients_file_keeps_hashes_only(workspace: Workspace) -> None:
    text = workspace.clients_file.read_text()
    assert workspace.token not in text
    assert "token_sha256" in text
    assert oct(workspace.clients_file.stat().st_mode & 0o777) == "0o600"


def test_each_client_is_found_by_its_own_token_only(workspace: Workspace) -> None:
    from gateway.clients import ClientRegistry

    path = workspace.clients_file
    tokens = {name: add_client(path, name)[0] for name in ("one", "two", "three")}
    registry = ClientRegistry(path)
    registry.load()
    for name, token in tokens.items():
        found = registry.authenticate(token)
        assert found is not None and found.name == name
    for wrong in ("", tokens["one"][:-1], tokens["one"] + "x", "gwt_" + "A" * 43):
        assert registry.authenticate(wrong) is None
    revoke_client(path, "two")
    assert registry.reload_if_changed(force=True)
    assert registry.authenticate(tokens["two"]) is None
    assert registry.authenticate(tokens["three"]) is not None


def test_a_broken_clients_file_keeps_the_previous_clients(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.clients import ClientRegistry

    registry = ClientRegistry(workspace.clients_file)
    registry.load()
    assert registry.authenticate(workspace.token) is not None
    workspace.clients_file.write_text("[clients.tests\n")  # a half-written edit
    assert registry.reload_if_changed(force=True) is False
    assert registry.authenticate(workspace.token) is not None
    assert "not reloaded, keeping the previous ones" in caplog.text
    workspace.clients_file.write_text("")
    assert registry.reload_if_changed(force=True) is True
    assert registry.authenticate(workspace.token) is None
