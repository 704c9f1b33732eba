"""No secret ever reaches a log line: the gateway runs as a real process at debug level through
every path that handles one (API calls, signatures, webhook, Bot API errors), and its whole
output is scanned for each secret."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from gateway.clients import add_client
from gateway.guards import SIGNATURE_HEADER, sign
from gateway.sandbox import SandboxSettings
from tests.conftest import TOKEN, USER, Sandbox, Workspace, terminate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(retry_base_seconds=0.1)


async def test_secrets_never_reach_the_logs(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    signed_token, signing_secret = add_client(workspace.clients_file, "signed", signing=True)
    assert signing_secret is not None
    await sandbox.create_chat(USER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_SERVER_HOST": workspace.host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{workspace.host}:8443",
            "GATEWAY_TELEGRAM_API_BASE": sandbox.url,
        }
    )
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--log-level", "debug"],
            cwd=workspace.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    secret = workspace.root / "config/secrets/webhook_secret.txt"
    base = f"https://{workspace.host}:8443"
    cert = (workspace.root / "certs/certificate.pem").read_bytes()
    try:
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(cert))
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            auth = {"Authorization": f"Bearer {workspace.token}"}
            # A message that fails at Telegram (so the error path logs), and one that works.
            await sandbox.control(
                "POST", "faults", {"method": "sendMessage", "count": 1, "kind": "server_error"}
            )
            for text in ("first", "second"):
                async with http.post(
                    f"{base}/enqueue_command", json={"text": text, "chat_id": USER}, headers=auth
                ) as resp:
                    assert resp.status == 202
                    command = (await resp.json())["id"]
            async with http.get(f"{base}/commands/{command}?wait=20", headers=auth) as resp:
                assert (await resp.json())["status"] == "sent"
            # A signed request, a replay of it, a wrong token, a wrong webhook secret.
            body = json.dumps({"text": "signed", "chat_id": USER}).encode()
            headers = {
                "Authorization": f"Bearer {signed_token}",
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(signing_secret, body, int(time.time())),
            }
            for expected in (202, 401):
                async with http.post(f"{base}/enqueue_command", data=body, headers=headers) as r:
                    assert r.status == expected
            wrong = {"Authorization": f"Bearer {workspace.token}x"}
            async with http.post(f"{base}/enqueue_command", json={"text": "x"}, headers=wrong) as r:
                assert r.status == 401
            hook = {"X-Telegram-Bot-Api-Secret-Token": secret.read_text().strip() + "x"}
            async with http.post(f"{base}/telegram/webhook", json={}, headers=hook) as r:
                assert r.status == 401
            # A user writes in: the update travels the webhook with the real secret.
            await sandbox.say("/help")
            await sandbox.wait_messages(USER, 3)
    finally:
        terminate(proc)
    output = log.read_text(errors="replace")
    assert "webhook set to" in output and "DEBUG" in output  # the log really is verbose
    secrets = {
        "bot token": TOKEN,
        "bot token's secret part": TOKEN.split(":", 1)[1],
        "webhook secret": secret.read_text().strip(),
        "API token": workspace.token,
        "signed client's token": signed_token,
        "signing secret": signing_secret,
    }
    for name, value in secrets.items():
        assert value not in output, f"the {name} appears in the log"
