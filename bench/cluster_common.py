"""What the PostgreSQL benches share: a private PostgreSQL server, replicas of one gateway on
it, who leads, the database's CPU time, and rounds alternating between groups of servers.

The server is `tests/pg_helpers.py`'s (initdb + pg_ctl in a temporary directory, as an
unprivileged user when we run as root, default durability: `fsync` and `synchronous_commit`
on). Every replica is a real `python -m gateway run` on its own 127.x.y.z address with its own
certificate, sharing the bot token, the API client and the secrets of the first replica (they
are copied once it has started: it generates some of them on its first start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from common import (
    GATEWAY_ARGV,
    REPO_ROOT,
    Service,
    Workspace,
    cpu_seconds,
    free_loopback_address,
    gateway_env,
    https_session,
    spawn,
    stop,
    wait_ready,
)

from gateway.certs import write_certificate

sys.path.insert(0, str(REPO_ROOT))
from tests.pg_helpers import PgServer, running_postgres

#: How long a replica may take to answer `/healthz` after its start, and to see a leader.
REPLICA_START_SECONDS = 60.0
LEADER_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.05


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: report them)."""
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def postgres() -> Iterator[PgServer]:
    """A private PostgreSQL server for the run, with a clear message when it is missing."""
    try:
        with running_postgres() as server:
            yield server
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc} (Debian: apt-get install postgresql)") from exc


def postgres_cpu_seconds(server: PgServer) -> float:
    """CPU time of the whole server: the postmaster (with its exited children) and every live
    backend or auxiliary process it started."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:  # utime, stime, cutime, cstime: reaped backends included
            total += sum(int(f) for f in fields[11:15]) / tick
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def replica_workspace(root: Path, first: Workspace, exclude_hosts: Sequence[str]) -> Workspace:
    """A workspace with `first`'s bot, API client and secrets, on an address of its own."""
    host = free_loopback_address(exclude_hosts)
    shutil.copytree(first.root / "config", root / "config")
    write_certificate(root / "certs", host, 2)
    return Workspace(root, host, first.token, first.api_token)


@dataclass
class Cluster:
    """Replicas of one gateway on one PostgreSQL database, started, killed and restarted one
    by one. `services[i]` is None while replica i is down."""

    sandbox_url: str
    dsn: str
    env: dict[str, str] = field(default_factory=dict)
    workspaces: list[Workspace] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    services: list[Service | None] = field(default_factory=list)

    def replica_env(self, ws: Workspace) -> dict[str, str]:
        settings = {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN": self.dsn}
        return gateway_env(ws, self.sandbox_url, {**settings, **self.env})

    async def add(self, ws: Workspace, http: aiohttp.ClientSession) -> int:
        """Start one more replica in `ws`; its index once it answers `/healthz`."""
        self.workspaces.append(ws)
        self.sessions.append(http)
        self.services.append(None)
        index = len(self.workspaces) - 1
        await self.start(index)
        return index

    async def start(self, index: int) -> Service:
        ws = self.workspaces[index]
        log = ws.root / f"r{index}.log"
        proc = spawn(GATEWAY_ARGV, ws.root, self.replica_env(ws), log)
        service = Service(f"r{index}", ws.gateway_url, proc, log)
        self.services[index] = service
        await wait_ready(service, "/healthz", self.sessions[index], REPLICA_START_SECONDS)
        return service

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` and reap it."""
        service = self.services[index]
        assert service is not None
        service.proc.send_signal(signal.SIGKILL)
        service.proc.wait(timeout=10)
        self.services[index] = None

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.services) if s is not None and s.proc.poll() is None]

    def pids(self) -> dict[str, int]:
        """The live replicas' process ids by name (r0, r1, ...)."""
        return {s.name: s.pid for s in self.services if s is not None}

    def stop_all(self) -> None:
        for service in self.services:
            if service is not None:
                stop(service.proc)

    async def health(self, index: int) -> dict[str, Any] | None:
        """Replica `index`'s `/healthz` body, or None when it does not answer 200."""
        url = self.workspaces[index].gateway_url + "/healthz"
        try:
            async with self.sessions[index].get(url) as resp:
                body: dict[str, Any] = await resp.json()
                return body if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def leader(self) -> int | None:
        """The index of the live replica that says it leads, if any."""
        for index in self.alive():
            body = await self.health(index)
            if body is not None and body.get("role") == "leader":
                return index
        return None

    async def wait_leader(self, timeout: float = LEADER_WAIT_SECONDS) -> int:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / POLL_SECONDS) + 1):
            index = await self.leader()
            if index is not None:
                return index
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        raise RuntimeError(f"no replica leads after {timeout:g}s")


@asynccontextmanager
async def cluster(
    root: Path,
    first: Workspace,
    sandbox_url: str,
    dsn: str,
    replicas: int,
    *,
    connections: int = 32,
    exclude_hosts: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """`replicas` replicas; the first (in `first`) starts alone and leads, the others follow."""
    group = Cluster(sandbox_url, dsn, env or {})
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(group.stop_all)
        taken = [*exclude_hosts, first.host]
        for index in range(replicas):
            ws = first if index == 0 else replica_workspace(root / f"r{index}", first, taken)
            taken.append(ws.host)
            http = await stack.enter_async_context(https_session(ws, connections))
            await group.add(ws, http)
            if index == 0:
                await group.wait_leader()
        yield group


# --- alternating rounds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """What one kind of round measures: `endpoints` (base URL, session) share the load, the CPU
    of `pids` (by name; and PostgreSQL's) is charged to it, `paused` are SIGSTOPped meanwhile."""

    name: str
    endpoints: list[tuple[str, aiohttp.ClientSession]]
    pids: dict[str, int]
    paused: list[int]


@dataclass(frozen=True)
class Round:
    """One timed round of one group: answers, and CPU seconds per part of the system."""

    group: str
    ok: int
    errors: int
    seconds: float
    cpu: dict[str, float]
    counts: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of each server (by name), included in cpu["servers"].
    server_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


#: Drives `group`'s endpoints for `seconds`; (ok, errors, seconds, client CPU seconds).
Load = Callable[[Group, float], Awaitable[tuple[int, int, float, float]]]


@contextlib.contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """SIGSTOP the processes for the block; SIGCONT whatever happens."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 once it has gone)."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


#: A snapshot of counters outside the servers under test (e.g. PostgreSQL's); a round
#: records their increase. Names starting with "cpu:" are CPU seconds.
Counters = Callable[[], Awaitable[dict[str, float]]]


def postgres_counters(server: PgServer, conn: asyncpg.Connection[Any]) -> Counters:
    """PostgreSQL's CPU seconds (all its processes), its transactions in the bench's database
    (read-only ones included) and its WAL syncs (fsyncs): their increase per request shows how
    many requests one transaction and one fsync carry. Both statistics reach the views up to a
    second late (backends flush them at most once a second): over a 5 s round they are
    approximations."""

    async def read() -> dict[str, float]:
        row = await conn.fetchrow(
            """SELECT (SELECT xact_commit FROM pg_stat_database
                        WHERE datname = current_database()),
                      (SELECT wal_sync FROM pg_stat_wal)"""
        )
        assert row is not None
        return {
            "cpu:postgres": postgres_cpu_seconds(server),
            "transactions": row[0],
            "wal_syncs": row[1],
        }

    return read


async def no_counters() -> dict[str, float]:
    return {}


async def measure(group: Group, load: Load, seconds: float, counters: Counters) -> Round:
    """One round: the load, the CPU used meanwhile by the group's servers, and `counters`."""

    def servers() -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in group.pids.items()}

    with paused(group.paused):
        servers_before, before = servers(), await counters()
        ok, errors, elapsed, client = await load(group, seconds)
        servers_after, after = servers(), await counters()
    deltas = {name: after[name] - before[name] for name in before}
    each = {name: servers_after[name] - servers_before[name] for name in servers_before}
    cpu = {"servers": sum(each.values()), "client": client}
    cpu.update({k.removeprefix("cpu:"): v for k, v in deltas.items() if k.startswith("cpu:")})
    counts = {k: v for k, v in deltas.items() if not k.startswith("cpu:")}
    return Round(group.name, ok, errors, elapsed, cpu, counts, each)


async def alternate(
    groups: Sequence[Group],
    load: Load,
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    counters: Counters = no_counters,
) -> list[Round]:
    """A warm-up round each, then `rounds` rounds of every group in turn."""
    for group in groups:
        await measure(group, load, warmup, counters)
    results = []
    for index in range(rounds):
        for group in groups:
            result = await measure(group, load, seconds, counters)
            print(
                f"  round {index + 1} {group.name:<12} {result.rate:8.0f} req/s  "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            results.append(result)
    return results


def medians(rounds: Sequence[Round]) -> dict[str, dict[str, Any]]:
    """Per group: median requests/s, and median CPU microseconds per request of each part and
    in all, and the cores the whole system kept busy (CPU seconds per second)."""
    by_group: dict[str, list[Round]] = {}
    for r in rounds:
        by_group.setdefault(r.group, []).append(r)
    summary: dict[str, dict[str, Any]] = {}
    for name, rs in by_group.items():
        parts = {
            part: round(statistics.median(1e6 * r.cpu[part] / max(r.ok, 1) for r in rs))
            for part in rs[0].cpu
        }
        summary[name] = {
            "median_rps": round(statistics.median(r.rate for r in rs), 1),
            "cpu_us_per_request": {**parts, "total": sum(parts.values())},
            "cores_busy": round(statistics.median(sum(r.cpu.values()) / r.seconds for r in rs), 2),
            "server_cpu_us_per_request": {
                name: round(statistics.median(1e6 * r.server_cpu[name] / max(r.ok, 1) for r in rs))
                for name in rs[0].server_cpu
            },
            "per_request": {
                name: round(statistics.median(r.counts[name] / max(r.ok, 1) for r in rs), 3)
                for name in rs[0].counts
            },
            "errors": sum(r.errors for r in rs),
        }
    return summary
