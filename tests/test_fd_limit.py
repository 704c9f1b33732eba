"""A gateway process at a low open-file limit, flooded with idle connections.

Before the listener had a cap, 1,000 idle TLS connections at 1,024 open files starved the
gateway's own calls to Telegram ("Too many open files": 17 of 20 accepted messages `failed`)
and logged `socket.accept() out of system resource` with a traceback hundreds of thousands of
times. Here `gateway run` (sandbox mode, so its Bot API is in the same process and shares the
limit) runs with RLIMIT_NOFILE = 256: its cap is derived from that limit, connections beyond it
are refused at once, every accepted message is still sent, and the log stays short.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway import constants as c
from gateway.certs import client_ssl_context, write_certificate
from tests.conftest import free_loopback_address, terminate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NOFILE = 256
MESSAGES = 20
#: Run `gateway run` with both open-file limits lowered (no preexec_fn: pytest has threads).
LAUNCH = (
    "import resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE}))\n"
    "from gateway.cli import main\n"
    "sys.exit(main(['run']))\n"
)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    sandbox: str
    token: str
    user: int
    host: str
    log: Path
    cert: bytes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def gateway_process(tmp_path: Path, env: dict[str, str]) -> Iterator[Running]:
    """`gateway run` in sandbox mode at RLIMIT_NOFILE = 256, with `env` on top."""
    host = free_loopback_address()
    write_certificate(tmp_path / "certs", host, 30)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full_env.update(
        {
            "GATEWAY_SERVER_HOST": host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{host}:8443",
            "GATEWAY_SANDBOX_PORT": str(free_port()),
            # Flood connections stay (no handshake) for the whole test unless we close them.
            "GATEWAY_SERVER_HANDSHAKE_TIMEOUT": "120",
            **env,
        }
    )
    log_path = tmp_path / "gateway.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH],
        cwd=tmp_path,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner += line
            if line.startswith("Press Ctrl+C"):
                break
        assert "SANDBOX mode" in banner, banner + log_path.read_text()
        token = re.search(r"API token of the demo client.*\n\s+(\S+)", banner)
        sandbox = re.search(r"sandbox:\s+(http://\S+)", banner)
        user = re.search(r"demo user (\d+)", banner)
        assert token and sandbox and user, banner
        yield Running(
            proc,
            f"https://{host}:8443",
            sandbox[1],
            token[1],
            int(user[1]),
            host,
            log_path,
            (tmp_path / "certs" / c.CERTIFICATE_FILENAME).read_bytes(),
        )
    finally:
        terminate(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


@pytest.fixture
def low_limit_gateway(tmp_path: Path) -> Iterator[Running]:
    with gateway_process(tmp_path, {}) as gw:
        yield gw


async def sent_texts(http: aiohttp.ClientSession, gw: Running) -> list[str]:
    async with http.get(f"{gw.sandbox}/sandbox/chats/{gw.user}/messages") as resp:
        data = await resp.json()
    messages = data["messages"] if isinstance(data, dict) else data
    return [m.get("text", "") for m in messages if m.get("text", "").startswith("fd test")]


async def refused_at_once(gw: Running) -> bool:
    """A new connection is closed by the gateway without waiting for anything."""
    reader, writer = await asyncio.open_connection(gw.host, 8443)
    try:
        async with asyncio.timeout(10):
            return await reader.read(1) == b""
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_flood_at_a_low_open_file_limit_fails_nothing(low_limit_gateway: Running) -> None:
    gw = low_limit_gateway
    auth = {"Authorization": f"Bearer {gw.token}"}
    context = client_ssl_context(gw.cert)
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        ids = []
        for n in range(MESSAGES):  # one chat: flood control sends them over ~20 s
            body = {"chat_id": gw.user, "text": f"fd test {n}"}
            async with http.post(f"{gw.url}/enqueue_command", json=body, headers=auth) as resp:
                assert resp.status == 202, await resp.text()
                ids.append((await resp.json())["id"])

        # Below the cap: idle connections are held, and a well-behaved client is served.
        flood = [await asyncio.open_connection(gw.host, 8443) for _ in range(40)]
        async with http.get(f"{gw.url}/healthz") as resp:
            assert resp.status == 200

        # Past the cap and past the open-file limit itself: the excess is refused at once.
        for _ in range(300):
            try:
                flood.append(await asyncio.open_connection(gw.host, 8443))
            except OSError:
                break
        assert await refused_at_once(gw)
        # Meanwhile the gateway's own calls to the Bot API go on: the queue drains.
        delivered: list[str] = []
        for _ in range(600):
            delivered = await sent_texts(http, gw)
            if len(delivered) >= MESSAGES // 2:
                break
            await asyncio.sleep(0.1)
        assert len(delivered) >= MESSAGES // 2, delivered
        assert await refused_at_once(gw)  # the flood still holds every slot

        for _, writer in flood:
            writer.close()
        statuses: list[str] = []
        for command_id in ids:  # served again once the flood is gone
            for _ in range(100):
                try:
                    url = f"{gw.url}/commands/{command_id}?wait=30"
                    async with http.get(url, headers=auth) as resp:
                        statuses.append((await resp.json())["status"])
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
        assert statuses == ["sent"] * MESSAGES, statuses
        assert sorted(await sent_texts(http, gw)) == sorted(f"fd test {n}" for n in range(MESSAGES))

    terminate(gw.proc)
    log = gw.log.read_text()
    assert "Traceback" not in log
    assert "Too many open files" not in log
    assert " ERROR " not in log
    assert len(log.splitlines()) < 200, log[-3000:]
    assert "max_connections allows" in log  # the refusals were logged, throttled


async def test_accept_errors_are_logged_once_per_interval(tmp_path: Path) -> None:
    """A cap set above what the open files allow: accept() meets EMFILE, again and again.
    That is one warning per interval, not a traceback per attempt, and service comes back."""
    with gateway_process(tmp_path, {"GATEWAY_SERVER_MAX_CONNECTIONS": "1000"}) as gw:
        flood = []
        for _ in range(400):  # until the listen backlog is full too
            try:
                async with asyncio.timeout(2):
                    flood.append(await asyncio.open_connection(gw.host, 8443))
            except (OSError, TimeoutError):
                break
        await asyncio.sleep(4)  # asyncio retries accept() meanwhile
        for _, writer in flood:
            writer.close()
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(gw.cert), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(100):
                try:
                    url, timeout = f"{gw.url}/healthz", aiohttp.ClientTimeout(total=5)
                    async with http.get(url, timeout=timeout) as resp:
                        assert resp.status == 200
                        break
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("not served after the flood")
        terminate(gw.proc)
        log = gw.log.read_text()
    assert "is above what the open-file limit" in log  # said at start
    assert 1 <= log.count("cannot accept connections: Too many open files") <= 2, log[-3000:]
    assert "out of system resource" not in log
    assert "Traceback" not in log
