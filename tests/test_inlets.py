"""Inlets over real HTTPS: configuration, authentication, payload checks, templates and their
fallback, Grafana and GitLab's documented payloads, generic dedup, storms, restarts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import keys
from gateway.errors import ConfigError
from gateway.sandbox import SandboxSettings
from tests.conftest import BOT_ID, USER, Gateway, GatewayFactory, Sandbox, Workspace
from tests.inlet_helpers import SECRET, bearer, eventually, free_port, inlet_toml, post

FIXTURES = Path(__file__).parent / "fixtures" / "inlets"
GROUP = -1009876543210
FAST = {
    "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "1000",
    "GATEWAY_FLOOD_CHAT_PER_SECOND": "1000",
    "GATEWAY_FLOOD_GROUP_PER_MINUTE": "100000",
}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    """Limits out of the way: these tests are about what is sent, not how fast."""
    return SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=100000)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def am_payload(
    group: str, *alerts: tuple[str, str], status: str | None = None, **labels: str
) -> dict[str, Any]:
    """An Alertmanager (version 4) notification: `alerts` are (instance, status) pairs."""
    items = [
        {
            "status": state,
            "labels": {"alertname": group, "instance": instance, **labels},
            "annotations": {"summary": f"{group} on {instance}"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{group}-{instance}",
        }
        for instance, state in alerts
    ]
    firing = any(state == "firing" for _, state in alerts)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "telegram",
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": items,
    }


async def texts(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The bot's text messages in GROUP (not the service message of a topic's creation)."""
    return [m for m in await sandbox.messages(GROUP) if m.get("text")]


async def forum_topic(sandbox: Sandbox) -> int:
    """Make GROUP a forum and open a topic in it; the topic's message_thread_id."""
    body = {"chat_id": GROUP, "type": "supergroup", "bot_id": BOT_ID, "is_forum": True}
    await sandbox.control("POST", "chats", body)
    answer = await sandbox.bot_api("createForumTopic", chat_id=GROUP, name="alerts")
    assert answer["ok"], answer
    topic: int = answer["result"]["message_thread_id"]
    return topic


async def start(
    gateway_factory: GatewayFactory,
    workspace: Workspace,
    sandbox: Sandbox,
    toml: str,
    env: dict[str, str] | None = None,
) -> Any:
    for name in ("prod", "gh", "gl", "graf", "any"):
        workspace.write(f"config/secrets/inlet_{name}.key", SECRET)
    await sandbox.create_chat(GROUP, "supergroup")
    return gateway_factory({**FAST, **(env or {})}, toml)


async def test_alertmanager_auth_and_format(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    toml = inlet_toml("prod", "alertmanager", [GROUP])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        body = am_payload("HighLoad", ("a", "firing"))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
            code, answer = await post(gw, "prod", body, headers)
            assert code == 401, answer
            assert answer["error"]["code"] == "unauthorized"
        code, answer = await post(gw, "prod", {"alerts": []}, bearer())
        assert code == 400 and answer["error"]["field"] == "groupKey", answer
        broken = am_payload("HighLoad", ("a", "firing"))
        del broken["alerts"][0]["labels"]
        code, answer = await post(gw, "prod", broken, bearer())
        assert code == 400 and answer["error"]["field"] == "alerts[0].labels", answer
        code, answer = await post(gw, "prod", b"not json", bearer())
        assert code == 400 and answer["error"]["field"] == "body"
        code, _ = await post(gw, "nope", body, bearer())
        assert code == 404
        assert await gw.app[keys.QUEUE].depth() == 0
        assert await sandbox.messages(GROUP) == []  # nothing was queued, nothing sent
        code, answer = await post(gw, "prod", body, bearer())
        assert code == 202 and answer["status"] == "accepted", answer
        [message] = await sandbox.wait_messages(GROUP, 1)
        assert "HighLoad" in message["text"]


async def test_group_messages_are_edited_and_survive_a_restart(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    topic = await forum_topic(sandbox)
    toml = inlet_toml("prod", "alertmanager", [GROUP, f"{GROUP}:{topic}"])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, _ = await post(gw, "prod", am_payload("Disk", ("a", "firing")), bearer())
        assert code == 202
        await eventually(lambda: texts(sandbox), lambda found: len(found) == 2)
    # A new process, the same database: the group's messages are still the ones to edit.
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        body = am_payload("Disk", ("a", "firing"), ("b", "firing"))
        code, _ = await post(gw, "prod", body, bearer())
        assert code == 202
        found = await eventually(
            lambda: texts(sandbox), lambda found: all("x2" in m["text"] for m in found)
        )
        assert len(found) == 2
        body = am_payload("Disk", ("a", "resolved"), ("b", "resolved"))
        code, _ = await post(gw, "prod", body, bearer())
        found = await eventually(lambda: texts(sandbox), lambda found: len(found) == 4)
        assert sum("RESOLVED" in m["text"] for m in found) == 2
        assert sum(m["text"] == "✅ Resolved: Disk" for m in found) == 2


async def test_a_failing_template_falls_back_to_plain_text(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    workspace.write("templates/alert.html.j2", "{{ alerts[0].labels.alertname | int(1/0) }}")
    toml = inlet_toml("prod", "alertmanager", [GROUP], template="templates/alert.html.j2")
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, _ = await post(gw, "prod", am_payload("Oops", ("a", "firing")), bearer())
        assert code == 202
        [message] = await sandbox.wait_messages(GROUP, 1)
        assert message["text"].startswith("FIRING: Oops") and not message["entities"]
        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            metrics = await resp.text()
        assert 'gateway_inlet_template_errors_total{inlet="prod"} 1.0' in metrics


async def test_templates_are_sandboxed_and_escaped(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    workspace.write("templates/t.j2", "<b>{{ payload.title }}</b>")
    workspace.write("templates/evil.j2", "{{ ''.__class__.__mro__ }}")
    toml = inlet_toml("any", "generic", [GROUP], template="templates/t.j2") + inlet_toml(
        "gh", "generic", [GROUP], template="templates/evil.j2"
    )
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, _ = await post(gw, "any", {"title": "<i>x</i> & y"}, bearer())
        assert code == 202
        [message] = await sandbox.wait_messages(GROUP, 1)
        # Escaped: shown as typed, not as italics.
        assert message["text"] == "<i>x</i> & y"
        assert [e["type"] for e in message["entities"]] == ["bold"]
        # Python internals are out of a template's reach: the plain fallback is sent.
        code, _ = await post(gw, "gh", {"title": "t"}, bearer())
        assert code == 202
        _, message = await sandbox.wait_messages(GROUP, 2)
        assert message["text"].startswith("gh: generic") and "object" not in message["text"]


async def test_grafana_documented_payload(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    toml = inlet_toml("graf", "grafana", [GROUP])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, answer = await post(gw, "graf", fixture("grafana.json"), bearer())
        assert code == 202, answer
        [message] = await sandbox.wait_messages(GROUP, 1)
        assert "FIRING x2" in message["text"]
        assert "High memory usage" in message["text"] and "High CPU usage" in message["text"]
        buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
        assert buttons == [
            {"text": "🔕 Silence", "url": fixture("grafana.json")["alerts"][0]["silenceURL"]}
        ]


@pytest.mark.parametrize(
    ("name", "event", "expected"),
    [
        ("gitlab_push.json", "Push Hook", "mike/diaspora: jsmith pushed 4 commit(s) to master"),
        ("gitlab_merge_request.json", "Merge Request Hook", "root open merge request !1"),
        ("gitlab_pipeline.json", "Pipeline Hook", "gitlab-org/gitlab-test: pipeline #31 failed"),
    ],
)
async def test_gitlab_documented_payloads(
    gateway_factory: GatewayFactory,
    workspace: Workspace,
    sandbox: Sandbox,
    name: str,
    event: str,
    expected: str,
) -> None:
    toml = inlet_toml("gl", "gitlab", [GROUP])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": "u-1"}
        code, _ = await post(gw, "gl", fixture(name), {**headers, "X-Gitlab-Token": "nope"})
        assert code == 401
        code, answer = await post(gw, "gl", fixture(name), {**headers, "X-Gitlab-Token": SECRET})
        assert code == 202, answer
        # GitLab re-sends with the same event UUID: not sent twice.
        code, answer = await post(gw, "gl", fixture(name), {**headers, "X-Gitlab-Token": SECRET})
        assert code == 200 and answer["status"] == "duplicate"
        [message] = await sandbox.wait_messages(GROUP, 1)
        assert expected in message["text"], message["text"]
        await asyncio.sleep(0.2)
        assert len(await sandbox.messages(GROUP)) == 1


async def test_generic_with_dedup_key(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    workspace.write("templates/up.j2", "{{ monitor }} is <b>{{ state }}</b>")
    toml = inlet_toml(
        "any", "generic", [GROUP], template="templates/up.j2", dedup_key="{{ monitor }}-{{ id }}"
    )
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        body = {"monitor": "api", "state": "down", "id": 7}
        codes = [(await post(gw, "any", body, bearer()))[0] for _ in range(3)]
        assert codes == [202, 200, 200]
        code, _ = await post(gw, "any", {**body, "id": 8}, bearer())
        assert code == 202
        found = await sandbox.wait_messages(GROUP, 2)
        assert [m["text"] for m in found] == ["api is down", "api is down"]


async def test_a_storm_of_a_thousand_alerts_is_a_handful_of_messages(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    toml = inlet_toml("prod", "alertmanager", [GROUP], batch_window_s=600)
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        semaphore = asyncio.Semaphore(16)

        async def one(number: int) -> int:
            async with semaphore:
                body = am_payload(f"Alert{number}", ("host", "firing"))
                return (await post(gw, "prod", body, bearer()))[0]

        codes = await asyncio.gather(*(one(n) for n in range(1000)))
        assert set(codes) == {202}
        found = await eventually(
            lambda: sandbox.messages(GROUP),
            lambda found: len(found) == 1 and "1000 notifications" in found[0]["text"],
            timeout=50,
        )
        assert "and 990 more" in found[0]["text"]


def test_configuration_errors_name_the_inlet(workspace: Workspace, sandbox: Sandbox) -> None:
    workspace.write("config/secrets/inlet_prod.key", SECRET)
    workspace.write("templates/bad.j2", "{% if %}")
    cases = {
        inlet_toml("prod", "alertmanager", [GROUP], colour="red"): "inlet 'prod': unknown key",
        inlet_toml("prod", "pager", [GROUP]): "inlet 'prod': kind must be one of",
        inlet_toml("prod", "alertmanager", []): "inlet 'prod': chats",
        inlet_toml("prod", "alertmanager", [GROUP], template="templates/none.j2"): (
            "inlet 'prod': cannot read template templates/none.j2"
        ),
        inlet_toml("prod", "alertmanager", [GROUP], template="templates/bad.j2"): (
            "inlet 'prod': template templates/bad.j2 line 1"
        ),
        inlet_toml("prod", "alertmanager", [GROUP], quiet_hours="late"): "inlet 'prod': quiet",
    }
    for toml, expected in cases.items():
        with pytest.raises(ConfigError) as caught:
            workspace.config(sandbox.url, toml=toml)
        assert expected in str(caught.value), str(caught.value)
        assert "\n" not in str(caught.value)


def test_quiet_hours_cross_midnight(workspace: Workspace, sandbox: Sandbox) -> None:
    workspace.write("config/secrets/inlet_prod.key", SECRET)
    toml = inlet_toml("prod", "alertmanager", [USER], quiet_hours="22:00-07:00 Europe/Berlin")
    [inlet] = workspace.config(sandbox.url, toml=toml).inlets
    assert inlet.quiet_hours is not None
    assert inlet.quiet_hours.active(1767222000.0)  # 2026-01-01 00:00 in Berlin
    assert not inlet.quiet_hours.active(1767261600.0)  # 2026-01-01 11:00 in Berlin


async def test_unknown_inlet_needs_no_api_token(gateway: Gateway) -> None:
    code, answer = await post(gateway, "nothing", {}, {})
    assert code == 404 and answer["error"]["code"] == "not_found"


async def test_alertmanager_down_is_shown_on_the_tap(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    closed = free_port()  # nothing listens there
    toml = inlet_toml(
        "prod", "alertmanager", [GROUP], alertmanager_url=f"http://127.0.0.1:{closed}"
    )
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        code, _ = await post(gw, "prod", am_payload("Down", ("a", "firing")), bearer())
        assert code == 202
        [message] = await sandbox.wait_messages(GROUP, 1)
        button = message["reply_markup"]["inline_keyboard"][0][0]
        assert button["text"] == "🔕 Silence 1h"
        tap = {
            "user_id": USER,
            "chat_id": GROUP,
            "message_id": message["message_id"],
            "data": button["callback_data"],
        }
        await sandbox.control("POST", "callbacks", tap)
        found = await eventually(
            lambda: sandbox.control("GET", f"bots/{BOT_ID}/callbacks"),
            lambda found: bool(found["callbacks"] and found["callbacks"][0].get("answer")),
        )
        answer = found["callbacks"][0]["answer"]
        assert answer["show_alert"] is True and "unreachable" in answer["text"], answer
        [message] = await sandbox.messages(GROUP)
        assert "Silenced" not in message["text"]


async def test_topics_and_quiet_hours_reach_telegram(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    """A recording proxy between the gateway and the sandbox shows what the Bot API got."""
    calls: list[tuple[str, bytes]] = []

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        calls.append((request.path.rsplit("/", 1)[-1], body))
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with sandbox.http.request(
            request.method, f"{sandbox.url}{request.path_qs}", data=body, headers=headers
        ) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type=resp.content_type
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
    now = datetime.now(UTC)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M} UTC"
    topic = await forum_topic(sandbox)
    toml = inlet_toml("prod", "alertmanager", [f"{GROUP}:{topic}"], quiet_hours=quiet)
    try:
        env = {"GATEWAY_TELEGRAM_API_BASE": proxy}
        async with await start(gateway_factory, workspace, sandbox, toml, env) as gw:
            code, _ = await post(gw, "prod", am_payload("Night", ("a", "firing")), bearer())
            assert code == 202
            await eventually(lambda: texts(sandbox), bool)
    finally:
        await runner.cleanup()
    [(_, body)] = [(method, body) for method, body in calls if method == "sendMessage"]
    text = body.decode()
    assert "message_thread_id" in text and str(topic) in text
    assert "disable_notification" in text and "true" in text.lower()


async def test_poison_in_a_payload_is_400_and_blocks_nothing(
    gateway_factory: GatewayFactory, workspace: Workspace, sandbox: Sandbox
) -> None:
    """A lone surrogate (valid JSON, not encodable) or absurd nesting in an alert is refused
    with 400 naming where it is, nothing stored; the next notification goes through."""
    toml = inlet_toml("prod", "alertmanager", [GROUP])
    async with await start(gateway_factory, workspace, sandbox, toml) as gw:
        surrogate = am_payload("Poison", ("a", "firing"))
        surrogate["alerts"][0]["labels"]["note"] = "lone \ud800 surrogate"
        nested: Any = "deep"
        for _ in range(100):  # the inlets allow 64 levels: payloads are deeper than API calls
            nested = {"n": nested}
        deep = am_payload("Poison", ("a", "firing"))
        deep["alerts"][0]["annotations"]["extra"] = nested
        for body in (surrogate, deep):
            code, answer = await post(gw, "prod", body, bearer())
            assert code == 400, answer
            assert answer["error"]["field"], answer
        assert await gw.app[keys.QUEUE].depth() == 0
        code, answer = await post(gw, "prod", am_payload("Fine", ("a", "firing")), bearer())
        assert code == 202, answer
        [message] = await sandbox.wait_messages(GROUP, 1)
        assert "Fine" in message["text"]
