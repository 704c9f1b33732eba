"""Helpers of the inlet tests: a real Prometheus Alertmanager, and polling the sandbox."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.conftest import Gateway, terminate

SECRET = "inlet-secret-0123456789abcdef"
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")

T = TypeVar("T")


def alertmanager_binary() -> str:
    """The Alertmanager executable (Debian's `prometheus-alertmanager`), or skip the test."""
    for name in ALERTMANAGER_BINARIES:
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin:/usr/sbin")
        if found:
            return found
    pytest.skip("Prometheus Alertmanager is not installed (scripts/test.sh installs it as root)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Alertmanager:
    """A running Alertmanager and a client of its API v2."""

    url: str
    http: aiohttp.ClientSession

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        async with self.http.post(f"{self.url}/api/v2/alerts", json=alerts) as resp:
            assert resp.status == 200, await resp.text()

    async def silences(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/api/v2/silences") as resp:
            assert resp.status == 200, await resp.text()
            data: list[dict[str, Any]] = await resp.json()
            return data


def alert(name: str, resolved: bool = False, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus posts it; `resolved` sets endsAt in the past."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', 'all')}"},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example.org/graph",
    }
    if resolved:
        body["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return body


@asynccontextmanager
async def running_alertmanager(
    tmp: Path,
    gateway: Gateway,
    inlet: str,
    group_by: str = "['alertname']",
    port: int | None = None,
) -> AsyncIterator[Alertmanager]:
    """Alertmanager whose webhook receiver posts to the gateway's inlet over HTTPS, trusting
    the gateway's test certificate, with the inlet's bearer secret."""
    binary = alertmanager_binary()
    port = port or free_port()
    (tmp / "am").mkdir(exist_ok=True)
    config = tmp / "am" / "alertmanager.yml"
    config.write_text(
        f"""route:
  receiver: telegram
  group_by: {group_by}
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: telegram
  webhook_configs:
  - url: {gateway.url}/inlets/{inlet}
    send_resolved: true
    max_alerts: 0
    http_config:
      authorization:
        type: Bearer
        credentials: {SECRET}
      tls_config:
        ca_file: {gateway.config.certificate_path}
"""
    )
    log = (tmp / "am" / "log.txt").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / 'am' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, (tmp / "am" / "log.txt").read_text()
                assert time.monotonic() < deadline, "Alertmanager did not become ready"
                await asyncio.sleep(0.1)
            yield Alertmanager(url, http)
    finally:
        terminate(proc)
        log.close()


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 20.0
) -> T:
    """Call `probe` until `check` holds on its result (or fail with the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        shown = json.dumps(value, default=str)[:2000]
        assert time.monotonic() < deadline, f"still not there: {shown}"
        await asyncio.sleep(0.1)


def inlet_toml(name: str, kind: str, chats: list[Any], **extra: Any) -> str:
    """`[[inlets]]` with the test secret in its secret file (written by `write_secret`)."""
    options = "".join(f"{key} = {json.dumps(value)}\n" for key, value in extra.items())
    return (
        "[[inlets]]\n"
        f'name = "{name}"\nkind = "{kind}"\nchats = {json.dumps(chats)}\n'
        f'secret_file = "config/secrets/inlet_{name}.key"\n{options}'
    )


async def post(
    gateway: Gateway, name: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    url = f"{gateway.url}/inlets/{name}"
    async with gateway.http.post(url, data=raw, headers=all_headers) as resp:
        return resp.status, await resp.json()


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRET}"}
