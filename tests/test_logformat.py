"""`--log-format json` from a real gateway process, and `gateway token --config`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from gateway.ops.logformat import JsonFormatter
from gateway.sandbox import SandboxSettings
from tests.conftest import USER, Sandbox, Workspace, terminate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(retry_base_seconds=0.1)


async def test_json_log_lines_name_the_command_chat_and_method(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
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
    args = ["run", "--log-format", "json", "--log-level", "debug"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            cwd=workspace.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
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
            # One 5xx first, so the retry is logged about this command.
            await sandbox.control(
                "POST", "faults", {"method": "sendMessage", "count": 1, "kind": "server_error"}
            )
            async with http.post(
                f"{base}/enqueue_command", json={"text": "hi", "chat_id": USER}, headers=auth
            ) as resp:
                assert resp.status == 202
                command = (await resp.json())["id"]
            async with http.get(f"{base}/commands/{command}?wait=20", headers=auth) as resp:
                assert (await resp.json())["status"] == "sent"
    finally:
        terminate(proc)
    assert proc.returncode == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    about = [entry for entry in entries if entry.get("command_id") == command]
    assert about and all(e["chat_id"] == USER and e["method"] == "sendMessage" for e in about)
    assert any("retry" in e["message"] for e in about)
    assert any(e["message"].startswith("worker stopped:") for e in entries)


def test_json_formatter_keeps_one_line_per_record() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "two\nlines %s", ("a",), None)
    record.chat_id = -100
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) | {"time": ""} == {
        "time": "",
        "level": "ERROR",
        "logger": "x",
        "message": "two\nlines a",
        "chat_id": -100,
    }


def test_token_honours_the_config_files_clients_file(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text(
        '[server]\nclients_file = "elsewhere/clients.toml"\n'
        'callback_secret_file = "elsewhere/callback.txt"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "token", "--config", "gw.toml", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    assert token("add", "ci").returncode == 0
    assert (tmp_path / "elsewhere/clients.toml").is_file()
    assert (tmp_path / "elsewhere/callback.txt").is_file()  # the client's callback key's secret
    assert not (tmp_path / "config").exists()
    assert token("list").stdout.startswith("ci: ")
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "token", "--config", "nope.toml", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


def test_token_takes_its_file_options_after_the_action_too(tmp_path: Path) -> None:
    """`gateway token add ci --config X` (as `check` and `backup` are written) works like
    `gateway token --config X add ci`; an option given before the action is not undone."""
    (tmp_path / "gw.toml").write_text('[server]\nclients_file = "elsewhere/clients.toml"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}

    def token(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "token", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    assert token("add", "ci", "--config", "gw.toml").returncode == 0
    assert (tmp_path / "elsewhere/clients.toml").is_file()
    assert not (tmp_path / "config/secrets/api_clients.toml").exists()
    assert token("list", "--config", "gw.toml").stdout.startswith("ci: ")
    assert token("list", "--file", "elsewhere/clients.toml").stdout.startswith("ci: ")
    assert token("--config", "gw.toml", "list").stdout.startswith("ci: ")
    assert token("callback-key", "ci", "--config", "gw.toml").returncode == 0
    assert token("revoke", "ci", "--config", "gw.toml").returncode == 0
    assert "no API clients" in token("--config", "gw.toml", "list").stdout
