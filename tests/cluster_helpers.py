"""Gateway replicas as real processes on one PostgreSQL and one sandbox (the HA tests).

Each replica is a `python -m gateway run` on its own loopback address, with a copy of the
first replica's config and secrets (same bot, same API client), logging JSON lines to a file.
`Cluster` starts them, keeps a client session for each, asks their `/healthz` who leads, and
stops every process it started (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from gateway.certs import client_ssl_context, write_certificate
from tests.conftest import Sandbox, Workspace, free_loopback_address, terminate

#: How long a replica may take to answer /healthz after it is started.
READY_SECONDS = 120.0


@dataclass
class Replica:
    name: str
    root: Path
    host: str
    port: int = 8443
    tls: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_entries(self, text: str = "") -> list[dict[str, Any]]:
        """The replica's JSON log lines whose message contains `text`."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and text in str(entry.get("message", "")):
                found.append(entry)
        return found


def log_time(entry: dict[str, Any]) -> float:
    """A JSON log line's time as Unix time."""
    return datetime.fromisoformat(entry["time"]).timestamp()


def replica_env(replica: Replica, sandbox: Sandbox, dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_SERVER_HOST": replica.host,
            "GATEWAY_SERVER_PUBLIC_URL": replica.base,
            "GATEWAY_TELEGRAM_API_BASE": sandbox.url,
            "GATEWAY_QUEUE_BACKEND": "postgres",
            "GATEWAY_QUEUE_DSN": dsn,
            "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "100",
            "GATEWAY_FLOOD_CHAT_PER_SECOND": "20",
        }
    )
    return env


def make_replica(workspace: Workspace, name: str, taken: list[str]) -> Replica:
    """A workspace like `workspace` (same bot, secrets and API client), on its own address."""
    if name == "r0":
        return Replica(name, workspace.root, workspace.host)
    host = free_loopback_address()
    while host in taken:
        host = free_loopback_address()
    root = workspace.root / name
    shutil.copytree(workspace.root / "config", root / "config")
    write_certificate(root / "certs", host, 30)
    return Replica(name, root, host)


async def health(http: aiohttp.ClientSession, replica: Replica) -> dict[str, Any] | None:
    try:
        async with http.get(f"{replica.base}/healthz") as resp:
            body: dict[str, Any] = await resp.json()
            return body if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


@asynccontextmanager
async def started(
    replica: Replica,
    sandbox: Sandbox,
    dsn: str,
    http: aiohttp.ClientSession,
    env: dict[str, str] | None = None,
    ready: bool = True,
) -> AsyncIterator[Replica]:
    """Run the replica (its log: JSON lines in `replica.log`) until the block ends; with
    `ready`, wait for its /healthz first."""
    with replica.log.open("ab") as out:
        replica.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--log-level", "info", "--log-format", "json"],
            cwd=replica.root,
            env={**replica_env(replica, sandbox, dsn), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if ready:
            await wait_ready(replica, http)
        yield replica
    finally:
        terminate(replica.proc)


async def wait_ready(replica: Replica, http: aiohttp.ClientSession) -> None:
    """Wait for /healthz: up to 120 s (a busy 2-core machine takes 15 s to import the package)."""
    assert replica.proc is not None
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if replica.proc.poll() is not None:
            raise AssertionError(f"{replica.name} exited: {replica.log.read_text()[-2000:]}")
        if await health(http, replica) is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{replica.name} did not become ready")


@dataclass
class Cluster:
    """Replicas of `workspace`'s gateway on `dsn`, each with a client session."""

    workspace: Workspace
    sandbox: Sandbox
    dsn: str
    stack: AsyncExitStack
    replicas: list[Replica] = field(default_factory=list)
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    async def start(
        self,
        env: dict[str, str] | None = None,
        dsn: str = "",
        ready: bool = True,
        configure: Callable[[Replica], None] | None = None,
    ) -> Replica:
        """Start one more replica (r0 first: the later ones copy its secrets)."""
        replica = self.add(configure)
        await self.launch(replica, env, dsn, ready)
        return replica

    def add(self, configure: Callable[[Replica], None] | None = None) -> Replica:
        """One more replica's directory (a copy of the workspace's config as it is now)."""
        taken = [r.host for r in self.replicas]
        replica = make_replica(self.workspace, f"r{len(self.replicas)}", taken)
        if configure is not None:
            configure(replica)
        self.replicas.append(replica)
        return replica

    async def launch(
        self,
        replica: Replica,
        env: dict[str, str] | None = None,
        dsn: str = "",
        ready: bool = True,
    ) -> None:
        """Start `replica`'s process (with `ready`, wait for its /healthz)."""
        if replica.tls:
            cert = (replica.root / "certs/certificate.pem").read_bytes()
            connector = aiohttp.TCPConnector(ssl=client_ssl_context(cert))
        else:
            connector = aiohttp.TCPConnector()
        self.sessions[replica.name] = await self.stack.enter_async_context(
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=10),
                headers={"Authorization": f"Bearer {self.workspace.token}"},
            )
        )
        session = self.sessions[replica.name]
        await self.stack.enter_async_context(
            started(replica, self.sandbox, dsn or self.dsn, session, env, ready)
        )

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive()]

    async def health(self, replica: Replica) -> dict[str, Any] | None:
        return await health(self.sessions[replica.name], replica)

    async def leader(self) -> Replica | None:
        for replica in self.alive():
            body = await self.health(replica)
            if body is not None and body["role"] == "leader":
                return replica
        return None

    async def wait_for_leader(self, tries: int = 400, but: Replica | None = None) -> Replica:
        for _ in range(tries):
            leader = await self.leader()
            if leader is not None and leader is not but:
                return leader
            await asyncio.sleep(0.05)
        raise AssertionError("no replica leads")

    async def enqueue(self, replica: Replica, body: dict[str, Any]) -> tuple[int, Any, Any]:
        """POST /enqueue_command to `replica`: (status, JSON body, headers); status 0 when the
        connection failed."""
        url = f"{replica.base}/enqueue_command"
        try:
            async with self.sessions[replica.name].post(url, json=body) as resp:
                try:
                    data = await resp.json()
                except (aiohttp.ContentTypeError, ValueError):
                    data = None
                return resp.status, data, resp.headers
        except (aiohttp.ClientError, TimeoutError):
            return 0, None, None

    async def final_statuses(
        self, ids: list[str], via: list[Replica] | None = None
    ) -> dict[str, str]:
        """Each command's final status (waiting up to 150 s each), asked of live replicas."""
        found: dict[str, str] = {}
        for command_id in ids:
            for _ in range(5):
                replica = next(r for r in via or self.replicas if r.alive())
                url = f"{replica.base}/commands/{command_id}"
                wait = aiohttp.ClientTimeout(total=40)
                try:
                    async with self.sessions[replica.name].get(
                        url, params={"wait": "30"}, timeout=wait
                    ) as resp:
                        if resp.status == 200:
                            found[command_id] = (await resp.json())["status"]
                            if found[command_id] not in ("queued", "sending"):
                                break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        return found
