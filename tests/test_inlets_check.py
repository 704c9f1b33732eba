"""`gateway check` on `[[inlets]]`: templates rendered against sample payloads and parsed as
Telegram parses them, secret files, chats, and whether `alertmanager_url` answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.certs import write_certificate
from tests.conftest import Sandbox, Workspace
from tests.inlet_helpers import SECRET, free_port, inlet_toml
from tests.test_check import by_name, run_check

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def alertmanager() -> AsyncIterator[str]:
    """A stand-in for Alertmanager's `GET /api/v2/status` on loopback."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"versionInfo": {"version": "0.27.0"}, "cluster": {}})

    app = web.Application()
    app.router.add_get("/api/v2/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_inlets_are_checked(
    workspace: Workspace, sandbox: Sandbox, alertmanager: str
) -> None:
    write_certificate(workspace.root / "certs", workspace.host, 365, force=True)
    for name in ("prod", "gh", "html", "loose", "gone"):
        workspace.write(f"config/secrets/inlet_{name}.key", SECRET)
    (workspace.root / "config/secrets/inlet_loose.key").chmod(0o640)
    workspace.write("templates/missing.j2", "{{ payload.nothing.deeper }}")
    workspace.write("templates/unclosed.j2", "<b>{{ title }}")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    toml = "\n".join(
        [
            '[server]\nkey_permissions = "warn"\n',
            inlet_toml(
                "prod", "alertmanager", [-100123, "-100123:7"], alertmanager_url=alertmanager
            ),
            inlet_toml("gh", "github", [1111], template="templates/missing.j2"),
            inlet_toml("html", "grafana", [1111], template="templates/unclosed.j2"),
            inlet_toml("loose", "generic", [1111]),
            inlet_toml("gone", "alertmanager", [1111], alertmanager_url=closed),
        ]
    )
    workspace.write("config/gateway.toml", toml)
    code, out = await run_check(workspace, sandbox, "--json")
    checks: dict[str, Any] = by_name(json.loads(out))
    assert code == 1, out

    prod = checks["inlet prod"]
    assert prod["status"] == "ok", prod
    assert "2 chat(s) (-100123, -100123:7)" in prod["detail"]
    assert "a firing group, a resolved group" in prod["detail"]
    answered = checks["inlet prod alertmanager"]
    assert answered["status"] == "ok" and "0.27.0" in answered["detail"], answered

    github = checks["inlet gh"]
    assert github["status"] == "fail" and "fails on a sample payload" in github["detail"]
    assert "UndefinedError" in github["detail"]

    grafana = checks["inlet html"]
    assert grafana["status"] == "fail" and "markup Telegram refuses" in grafana["detail"]

    loose = checks["inlet loose"]
    assert loose["status"] == "fail" and "readable by others" in loose["detail"]
    assert loose["fix"].startswith("chmod 600 ")

    gone = checks["inlet gone alertmanager"]
    assert gone["status"] == "warn" and "cannot be reached" in gone["detail"], gone
    assert SECRET not in out  # no secret in the report


async def test_no_inlets_no_lines(workspace: Workspace, sandbox: Sandbox) -> None:
    _, out = await run_check(workspace, sandbox, "--json")
    assert not [name for name in by_name(json.loads(out)) if name.startswith("inlet")]
