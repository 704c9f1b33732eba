"""No SSRF: a client's callback_url reaches only `[server] callback_allowed_networks`, whatever
the spelling of its address, at the door and again at connection time; each client's callbacks
are signed with a key of its own."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.cli import main
from gateway.egress import EgressRefused, guarded_session, host_address, parse_networks
from gateway.guards import callback_key
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox, Workspace
from tests.test_twoway import Service, ask, service, tap, verify

__all__ = ["service"]  # the fixture, imported for the tests below

LOOPBACK_ONLY = {"GATEWAY_SERVER_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32"}
METADATA = ipaddress.ip_address("169.254.169.254")
LOCAL = ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", LOCAL),
        ("127.1", LOCAL),  # short form: the last part fills the rest
        ("0x7f.1", LOCAL),  # hex
        ("0x7f.0.0.1", LOCAL),
        ("0x7f000001", LOCAL),  # one hex number
        ("2130706433", LOCAL),  # one decimal number
        ("0177.0.0.1", LOCAL),  # octal
        ("017700000001", LOCAL),  # one octal number
        ("[::ffff:127.0.0.1]", LOCAL),  # IPv4-mapped IPv6
        ("::ffff:7f00:1", LOCAL),
        ("169.254.169.254", METADATA),
        ("0251.0376.0251.0376", METADATA),
        ("0xa9.0xfe.0xa9.0xfe", METADATA),
        ("0xa9fea9fe", METADATA),
        ("2852039166", METADATA),
        ("169.254.43518", METADATA),
        ("[::1]", ipaddress.ip_address("::1")),
        ("example.com", None),  # a name: resolved, then checked
        ("1.2.3.4.5", None),  # not an address: a name that will not resolve
    ],
)
def test_every_spelling_of_an_address_is_read_as_the_c_library_reads_it(
    host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> None:
    assert host_address(host) == address


@pytest.mark.parametrize("host", ["08.0.0.1", "0x1ffffffff", "256.1.1.1.1"])
def test_malformed_numbers_are_refused_not_guessed(host: str) -> None:
    if host == "256.1.1.1.1":  # five parts: a name (which will not resolve)
        assert host_address(host) is None
        return
    with pytest.raises(EgressRefused):
        host_address(host)


async def test_callbacks_are_refused_by_default(gateway: Gateway) -> None:
    code, answer = await gateway.enqueue(
        {"text": "?", "chat_id": USER, "expect_reply": {"callback_url": "https://example.com/"}}
    )
    assert code == 400
    assert answer["error"]["field"] == "expect_reply.callback_url"
    assert "callback_allowed_networks" in answer["error"]["message"]


async def test_addresses_outside_the_allowed_networks_are_refused_in_every_spelling(
    gateway_factory: GatewayFactory, service: Service
) -> None:
    port = service.url.rsplit(":", 1)[1]
    refused = [
        f"http://127.0.0.2:{port}/cb",
        f"http://127.2:{port}/cb",
        f"http://0x7f000002:{port}/cb",
        f"http://2130706434:{port}/cb",
        f"http://0177.0.0.2:{port}/cb",
        f"http://[::ffff:127.0.0.2]:{port}/cb",
        f"http://[::1]:{port}/cb",
        "http://169.254.169.254/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://169.254.43518/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1/",
        f"http://user@127.0.0.1:{port}/cb",  # userinfo: refused even to an allowed address
        f"http://127.0.0.1:{port}@169.254.169.254/",
        "http://08.1.2.3/",
        "http://no-such-host.invalid/",
    ]
    async with gateway_factory(LOOPBACK_ONLY) as gw:
        for url in refused:
            code, answer = await gw.enqueue(
                {"text": "?", "chat_id": USER, "expect_reply": {"callback_url": url}}
            )
            assert code == 400, (url, answer)
            assert answer["error"]["field"] == "expect_reply.callback_url", (url, answer)
    assert service.calls == []


async def test_an_allowed_address_in_another_spelling_is_called_at_its_canonical_form(
    gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    port = service.url.rsplit(":", 1)[1]
    async with gateway_factory(LOOPBACK_ONLY) as gw:
        _, message = await ask(
            gw, sandbox, buttons=[["Yes"]], callback_url=f"http://0x7f.1:{port}/cb"
        )
        await tap(sandbox, message, "Yes")
        [call] = await service.wait_calls(1)
    assert call["body"]["status"] == "answered"


async def test_the_connection_is_checked_too(
    gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    """A callback accepted while its address was allowed, called after the networks changed
    (as when a name's address changes: DNS rebinding): the connection is refused."""
    async with gateway_factory(LOOPBACK_ONLY) as gw:
        command_id, message = await ask(
            gw, sandbox, buttons=[["Yes"]], callback_url=f"{service.url}/cb"
        )
    async with gateway_factory({"GATEWAY_SERVER_CALLBACK_ALLOWED_NETWORKS": "10.0.0.0/8"}) as gw:
        await tap(sandbox, message, "Yes")
        assert (await gw.command(command_id, wait=10))["status"] == "answered"
        await asyncio.sleep(1.0)  # the callback's first attempt is made at once
    assert service.calls == []


async def test_a_callback_answered_with_a_redirect_is_not_followed(
    gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    """A 307 from an allowed address would move the POST elsewhere, to an address checked by
    nobody: the gateway counts it as the service's failure and never goes where it points."""
    paths: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        paths.append(request.path)
        raise web.HTTPTemporaryRedirect(f"{service.url}/elsewhere")

    service.behaviour = redirect
    async with gateway_factory(LOOPBACK_ONLY) as gw:
        command_id, message = await ask(
            gw, sandbox, buttons=[["Yes"]], callback_url=f"{service.url}/cb"
        )
        await tap(sandbox, message, "Yes")
        assert (await gw.command(command_id, wait=10))["status"] == "answered"
        await service.wait_calls(1)
        await asyncio.sleep(1.0)  # a followed redirect would have come right after
    assert paths and set(paths) == {"/cb"}, paths


async def test_the_guarded_session_refuses_addresses_and_names_outside(service: Service) -> None:
    port = service.url.rsplit(":", 1)[1]
    outside = parse_networks(["10.0.0.0/8"])
    async with guarded_session(outside) as http:
        for url in (f"{service.url}/x", f"http://localhost:{port}/x", f"http://2130706433:{port}/"):
            with pytest.raises(aiohttp.ClientError):
                async with http.post(url, data=b"{}"):
                    pass
    assert service.calls == []
    async with (
        guarded_session(parse_networks(["127.0.0.0/8", "::1/128"])) as http,
        http.post(f"http://localhost:{port}/x", data=b"{}") as resp,
    ):
        assert resp.status == 200
    assert len(service.calls) == 1


async def test_each_client_checks_its_callbacks_with_its_own_key(
    workspace: Workspace, gateway_factory: GatewayFactory, sandbox: Sandbox, service: Service
) -> None:
    async with gateway_factory(LOOPBACK_ONLY) as gw:
        _, message = await ask(gw, sandbox, buttons=[["Yes"]], callback_url=f"{service.url}/cb")
        await tap(sandbox, message, "Yes")
        [call] = await service.wait_calls(1)
    secret = (workspace.root / "config/secrets/callback_secret.txt").read_text().strip()
    assert verify(call["signature"], call["raw"], callback_key(secret, "tests"))
    assert not verify(call["signature"], call["raw"], callback_key(secret, "other"))
    assert not verify(call["signature"], call["raw"], secret)


def test_the_cli_tells_a_client_its_callback_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        "--file",
        str(tmp_path / "clients.toml"),
        "--callback-secret-file",
        str(tmp_path / "callback_secret.txt"),
    ]
    assert main(["token", *files, "add", "billing"]) == 0
    added = capsys.readouterr().out
    assert main(["token", *files, "callback-key", "billing"]) == 0
    key = capsys.readouterr().out.strip()
    secret = (tmp_path / "callback_secret.txt").read_text().strip()
    assert key == callback_key(secret, "billing") and key in added
    assert (tmp_path / "callback_secret.txt").stat().st_mode & 0o777 == 0o600
    assert main(["token", *files, "callback-key", "nobody"]) == 2
