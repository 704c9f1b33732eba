"""The `gateway` command as a newcomer uses it: sandbox mode, its printed curl lines, TLS."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.certs import write_certificate
from tests.conftest import free_loopback_address, terminate

pytestmark = pytest.mark.timeout(120)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def sandbox_mode(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`python -m gateway run` with no token: sandbox mode. Yields (process, banner, cwd)."""
    host = free_loopback_address()
    write_certificate(tmp_path / "certs", host, 30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_SERVER_HOST": host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{host}:8443",
            "GATEWAY_SANDBOX_PORT": str(free_port()),
        }
    )
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,  # a file, not a pipe: nobody drains it while the test runs
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
        assert "SANDBOX mode" in banner, banner + (tmp_path / "gateway.log").read_text()
        yield proc, banner, tmp_path
    finally:
        terminate(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def curl_lines(banner: str) -> list[str]:
    """The curl commands the banner prints (continuation lines joined)."""
    text = banner.replace("\\\n", " ")
    return [line[line.index("curl ") :].strip() for line in text.splitlines() if "curl " in line]


def run_curl(command: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", command + " --silent --show-error --max-time 10"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sandbox_mode_banner_curl_lines_work(
    sandbox_mode: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _, banner, cwd = sandbox_mode
    enqueue, show, write_in, routed, question, tap, answer_of, health = curl_lines(banner)
    answer = json.loads(run_curl(enqueue, cwd))
    assert answer["status"] == "queued"
    assert json.loads(run_curl(health, cwd))["status"] == "ok"
    texts: list[str] = []
    for _ in range(100):
        listed = json.loads(run_curl(show, cwd))
        messages = listed["messages"] if isinstance(listed, dict) else listed
        texts = [m["text"] for m in messages]
        if "Hello from the gateway" in texts:
            break
        time.sleep(0.1)
    # The demo user pressed Start (so the bot answered with its help), then our message came.
    assert "Hello from the gateway" in texts
    before = len(texts)
    assert "update_id" in json.loads(run_curl(write_in, cwd))
    for _ in range(100):
        listed = json.loads(run_curl(show, cwd))
        messages = listed["messages"] if isinstance(listed, dict) else listed
        if len(messages) > before:
            break
        time.sleep(0.1)
    assert "Telegram Gateway" in messages[-1]["text"]

    # A command routed to the demo service comes back as an answer.
    run_curl(routed, cwd)
    for _ in range(100):
        listed = json.loads(run_curl(show, cwd))
        texts = [m["text"] for m in listed["messages"]]
        if "echo: hello from Telegram" in texts:
            break
        time.sleep(0.1)
    assert "echo: hello from Telegram" in texts

    # A question, a tap on "Approve", and the answer with who gave it.
    command_id = json.loads(run_curl(question, cwd))["id"]
    status_line = answer_of.replace("/ID", f"/{command_id}")
    for _ in range(100):
        status = json.loads(run_curl(status_line, cwd))
        if status["status"] == "awaiting_reply":
            break
        time.sleep(0.1)
    message_id = status["result"]["message_id"]
    run_curl(tap.replace("MESSAGE_ID", str(message_id)).replace("q:ID", f"q:{command_id}"), cwd)
    for _ in range(100):
        status = json.loads(run_curl(status_line, cwd))
        if status["status"] == "answered":
            break
        time.sleep(0.1)
    assert status["reply"]["answer"] == "Approve" and status["reply"]["by"]["id"] == 1111


def test_listener_refuses_tls_1_1_and_accepts_1_2(
    sandbox_mode: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _, banner, cwd = sandbox_mode
    match = re.search(r"gateway:\s+https://([\d.]+):(\d+)", banner)
    assert match, banner
    target = f"{match[1]}:{match[2]}"

    def handshake(flag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", flag, "-connect", target, "-CAfile", "certs/certificate.pem"],
            cwd=cwd,
            input="",
            capture_output=True,
            text=True,
            timeout=30,
        )

    old = handshake("-tls1_1")
    assert old.returncode != 0
    assert "no peer certificate available" in old.stdout  # no handshake happened
    new = handshake("-tls1_2")
    assert new.returncode == 0, new.stderr
    assert "Protocol  : TLSv1.2" in new.stdout or "TLSv1.2" in new.stdout
    assert "Verify return code: 0 (ok)" in new.stdout


def test_gen_cert_refuses_to_overwrite(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "gateway", "gen-cert", "--host", "127.0.0.1", "--out", "c"]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert oct((tmp_path / "c/key.pem").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr
    forced = subprocess.run([*args, "--force"], cwd=tmp_path, capture_output=True, text=True)
    assert forced.returncode == 0
