"""Fresh-clone paths: sandbox mode on any address, the first certificate, the scripts."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway import constants as c
from gateway.certs import certificate_matches_host, load_certificate_pair
from gateway.commands import Command
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ops.firstrun import make_missing_certificate
from gateway.queue.sqlite import SqliteQueue
from tests.conftest import TOKEN, free_loopback_address, terminate
from tests.test_cli import curl_lines, free_port, run_curl

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


def loopback_with_port(port: int) -> str:
    """A 127.x.y.z address whose `port` is free."""
    for _ in range(50):
        host = free_loopback_address()
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return host
    raise RuntimeError(f"no loopback address with port {port} free")


@contextmanager
def sandbox_run(cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """`gateway run --make-certificate` in sandbox mode (as scripts/run.sh does); the banner."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    clean.update({"GATEWAY_SANDBOX_PORT": str(free_port()), **env})
    log_path = cwd / "gateway.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--make-certificate"],
            cwd=cwd,
            env=clean,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("Press Ctrl+C"):
                    break
            banner = "".join(lines)
            assert "SANDBOX mode" in banner, banner + log_path.read_text()
            yield banner
        finally:
            terminate(proc)
            if proc.stdout is not None:
                proc.stdout.close()


def wait_for_text(show: str, cwd: Path, text: str) -> list[str]:
    texts: list[str] = []
    for _ in range(150):
        texts = [m["text"] for m in json.loads(run_curl(show, cwd))["messages"]]
        if text in texts:
            break
        time.sleep(0.1)
    return texts


def test_sandbox_mode_follows_server_host_and_port(tmp_path: Path) -> None:
    host = loopback_with_port(88)
    env = {"GATEWAY_SERVER_HOST": host, "GATEWAY_SERVER_PORT": "88"}
    with sandbox_run(tmp_path, env) as banner:
        url = f"https://{host}:88"
        assert f"gateway:  {url}" in banner
        assert "127.0.0.1:8443" not in banner
        info = load_certificate_pair(tmp_path / "certs/certificate.pem", tmp_path / "certs/key.pem")
        assert certificate_matches_host(info, host)
        enqueue, show, write_in, *_ = curl_lines(banner)
        assert all(url in line for line in (enqueue, *curl_lines(banner)[4:]) if "--cacert" in line)
        assert json.loads(run_curl(enqueue, tmp_path))["status"] == "queued"
        assert "Hello from the gateway" in wait_for_text(show, tmp_path, "Hello from the gateway")
        # The webhook is registered at the listener's address: /help reaches the bot.
        base = show.split()[1].split("/sandbox/")[0]
        hook = json.loads(run_curl(f"curl {base}/bot{c.SANDBOX_TOKEN}/getWebhookInfo", tmp_path))
        assert hook["result"]["url"] == f"{url}/telegram/webhook"
        before = len(json.loads(run_curl(show, tmp_path))["messages"])
        run_curl(write_in, tmp_path)
        for _ in range(150):
            messages = json.loads(run_curl(show, tmp_path))["messages"]
            if len(messages) > before:
                break
            time.sleep(0.1)
        assert "Telegram Gateway" in messages[-1]["text"]


def test_sandbox_mode_names_the_port_when_the_sandbox_could_not_deliver(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[server\] port 9443"):
        load_config(None, {"GATEWAY_SERVER_PORT": "9443"}, base_dir=tmp_path)


def test_restarted_demo_delivers_what_the_last_run_left_queued(tmp_path: Path) -> None:
    """The demo chat exists before the worker sends: nothing queued is refused."""
    left = Command("sendMessage", {"chat_id": c.SANDBOX_DEMO_USER, "text": "left from last run"})

    async def seed() -> None:
        queue = SqliteQueue(tmp_path / "var/gateway.db")
        await queue.open()
        await queue.put([left])
        await queue.close()

    asyncio.run(seed())
    host = free_loopback_address()
    with sandbox_run(tmp_path, {"GATEWAY_SERVER_HOST": host}) as banner:
        _, show, *_ = curl_lines(banner)
        assert "left from last run" in wait_for_text(show, tmp_path, "left from last run")


def test_first_real_run_makes_a_certificate_for_public_url(tmp_path: Path) -> None:
    (tmp_path / "config/secrets").mkdir(parents=True)
    (tmp_path / "config/secrets/bot_api.txt").write_text(TOKEN + "\n")
    (tmp_path / "config/secrets/bot_api.txt").chmod(0o600)  # as the README tells users
    (tmp_path / "config/secrets/allowed_user.txt").write_text("1111\n")
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org:8443"}
    config = load_config(None, env, base_dir=tmp_path)
    assert make_missing_certificate(config) == tmp_path / "certs/certificate.pem"
    info = load_certificate_pair(config.certificate_path, config.private_key_path)
    assert certificate_matches_host(info, "gw.example.org")
    assert (config.private_key_path.stat().st_mode & 0o777) == 0o600
    assert make_missing_certificate(config) is None  # never replaces what is there


def test_gen_cert_script_resolves_out_against_the_callers_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/gen_cert.sh"), "--host", "127.0.0.1", "--out", "mine"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mine/certificate.pem").is_file()
    assert (tmp_path / "mine/key.pem").stat().st_mode & 0o777 == 0o600


def test_no_script_reads_a_variable_the_gateway_refuses() -> None:
    from gateway.config import ENV_CONFIG, ENV_PREFIX, SECTIONS

    known = {ENV_CONFIG, "GATEWAY_BOT_TOKEN"}
    for name, cls in SECTIONS.items():
        known |= {f"{ENV_PREFIX}{name.upper()}_{f.upper()}" for f in cls.__dataclass_fields__}
    for script in (ROOT / "scripts").glob("*.sh"):
        for word in script.read_text().replace("{", " ").replace("}", " ").split():
            for part in word.split("$"):
                name = part.split(":")[0].strip("\"'")
                if name.startswith(ENV_PREFIX):
                    assert name in known, f"{script.name} reads {name}"
