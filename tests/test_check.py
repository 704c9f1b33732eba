"""`gateway check` against the sandbox: a healthy deployment, then a broken one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from gateway.certs import write_certificate
from gateway.queue.schema import MIGRATIONS
from tests.conftest import Gateway, Sandbox, Workspace

pytestmark = pytest.mark.timeout(120)


async def run_check(workspace: Workspace, sandbox: Sandbox, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_SERVER_HOST": workspace.host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{workspace.host}:8443",
            "GATEWAY_TELEGRAM_API_BASE": sandbox.url,
        }
    )
    # In a thread: the sandbox answering the check runs on this test's event loop.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "check", *args],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not done.stderr.strip() or "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in report["checks"]}


async def test_a_running_deployment_passes_every_check(
    gateway: Gateway, workspace: Workspace, sandbox: Sandbox
) -> None:
    status, _ = await gateway.enqueue({"text": "x", "chat_id": 1111})
    assert status == 202
    code, out = await run_check(workspace, sandbox, "--json")
    report = json.loads(out)
    checks = by_name(report)
    assert code == 0 and report["ok"], out
    assert list(checks) == [
        "config",
        "certificate",
        "private key",
        "token",
        "webhook",
        "database",
        "api clients",
    ]
    # The test certificate is valid for 30 days: inside the renewal warning, not a failure.
    assert checks.pop("certificate")["status"] == "warn"
    assert "29 days left" in report["checks"][1]["detail"]
    assert all(check["status"] == "ok" for check in checks.values()), out
    assert "@" in checks["token"]["detail"]
    assert gateway.config.webhook_url in checks["webhook"]["detail"]
    assert f"schema {max(MIGRATIONS)}/{max(MIGRATIONS)}" in checks["database"]["detail"]
    assert "1 in " in checks["api clients"]["detail"]


async def test_a_broken_deployment_says_what_to_do(workspace: Workspace, sandbox: Sandbox) -> None:
    # Not running (no webhook), a certificate for another host, a key others can read, and
    # no API clients.
    write_certificate(workspace.root / "certs", "127.9.9.9", 30, force=True)
    (workspace.root / "certs/key.pem").chmod(0o644)
    workspace.clients_file.unlink()
    code, out = await run_check(workspace, sandbox)
    lines = {line.split(":", 1)[0]: line for line in out.splitlines()}
    assert code == 1, out
    assert lines["FAIL certificate"].endswith("--force")
    assert f"gen_cert.sh --host {workspace.host}" in lines["FAIL certificate"]
    assert "chmod 600" in lines["FAIL private key"]
    assert lines["OK   token"]
    assert "start the gateway" in lines["FAIL webhook"]
    assert "gateway token add" in lines["FAIL api clients"]
    assert lines["OK   database"]  # not created yet: the first start makes it

    (workspace.root / "config/gateway.toml").write_text("[server]\nport = 'x'\n")
    code, out = await run_check(workspace, sandbox, "--json")
    assert code == 1 and by_name(json.loads(out))["config"]["status"] == "fail"
    assert "[server] port" in out
