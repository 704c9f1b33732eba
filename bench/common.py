"""What every benchmark shares: a temporary workspace, the processes under test, a client.

A workspace is a throw-away project directory holding a bot token and an API client token
generated at run time, an allowed-users file and a self-signed certificate for a free 127.x.y.z
address. The sandbox,
the gateway and the bare baseline server run as real subprocesses (`python -m gateway ...`),
each stopped with SIGTERM, then SIGKILL, whatever happens. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from gateway.certs import client_ssl_context, write_certificate
from gateway.clients import add_client

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable
GATEWAY_ARGV = [PYTHON, "-m", "gateway", "run", "--log-level", "warning"]
T = TypeVar("T")

BOT_ID = 4242
DEMO_USER = 1111
GATEWAY_PORT = 8443
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Workspace:
    """A temporary gateway directory: token, allowed users, certificate for `host`."""

    root: Path
    host: str
    token: str
    #: Bearer token of the workspace's API client (`config/secrets/api_clients.toml`).
    api_token: str

    @property
    def cert_path(self) -> Path:
        return self.root / "certs" / "certificate.pem"

    @property
    def key_path(self) -> Path:
        return self.root / "certs" / "key.pem"

    @property
    def gateway_url(self) -> str:
        return f"https://{self.host}:{GATEWAY_PORT}"


@dataclass(frozen=True)
class Service:
    """A running subprocess and the base URL it serves."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


# --- workspace ----------------------------------------------------------------------------------


def load_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every load bench shares: rounds, their length, warm-up and
    connections."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    return parser


def add_client_option(parser: argparse.ArgumentParser, default: str, help: str) -> None:
    """`--client aiohttp|wrk`; `default` "wrk?" means wrk when installed, else aiohttp."""
    if default == "wrk?":
        default = "wrk" if shutil.which("wrk") else "aiohttp"
    parser.add_argument("--client", choices=["aiohttp", "wrk"], default=default, help=help)


def parse_load_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, refusing `--client wrk` when wrk is not installed."""
    args = parser.parse_args()
    if getattr(args, "client", None) == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    return args


def free_loopback_address(exclude: Sequence[str] = ()) -> str:
    """A random 127.x.y.z address whose port 8443 is free right now."""
    for _ in range(50):
        octets = (random.randint(1, 254), random.randint(1, 254), random.randint(2, 254))
        host = "127.{}.{}.{}".format(*octets)
        if host in exclude:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, GATEWAY_PORT))
            except OSError:
                continue
        return host
    raise RuntimeError(f"no free loopback address with port {GATEWAY_PORT}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def temp_root() -> Iterator[Path]:
    """A temporary directory for workspaces and logs, removed at the end (secrets included)."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as name:
        yield Path(name)


def make_workspace(root: Path, exclude_hosts: Sequence[str] = ()) -> Workspace:
    """Write a fresh bot token, an API client (all chats, no rate limit), the allowed users and
    a certificate for a free loopback address."""
    host = free_loopback_address(exclude_hosts)
    token = f"{BOT_ID}:bench-{secrets.token_urlsafe(18)}"
    secrets_dir = root / "config" / "secrets"
    secrets_dir.mkdir(parents=True, mode=0o700)
    (secrets_dir / "bot_api.txt").write_text(token + "\n")
    (secrets_dir / "bot_api.txt").chmod(0o600)  # the gateway refuses a token others can read
    (secrets_dir / "allowed_user.txt").write_text(f"{DEMO_USER}\n")
    api_token, _ = add_client(secrets_dir / "api_clients.toml", "bench")
    write_certificate(root / "certs", host, 2)
    return Workspace(root, host, token, api_token)


# --- subprocesses -------------------------------------------------------------------------------


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any GATEWAY_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def spawn(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a subprocess with stdout and stderr going to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after a grace period (SIGCONT first)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)


def log_tail(log: Path, chars: int = 2000) -> str:
    """The end of a subprocess log, for error messages."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


async def wait_ready(
    service: Service, path: str, http: aiohttp.ClientSession, timeout: float = 30.0
) -> None:
    """Poll `GET path` until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL_SECONDS) + 1):
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited:\n{log_tail(service.log)}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(service.url + path) as resp:
                if resp.status == 200:
                    return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{service.name} not ready after {timeout:g}s:\n{log_tail(service.log)}")


@asynccontextmanager
async def running(
    name: str,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    url: str,
    ready_path: str,
    http: aiohttp.ClientSession,
) -> AsyncIterator[Service]:
    """Run a subprocess for the `async with` block, once `ready_path` answers 200."""
    log = cwd / f"{name}.log"
    service = Service(name, url, spawn(argv, cwd, env, log), log)
    try:
        await wait_ready(service, ready_path, http, STARTUP_TIMEOUT_SECONDS)
        yield service
    finally:
        stop(service.proc)


@asynccontextmanager
async def sandbox_process(
    workdir: Path, http: aiohttp.ClientSession, limits: tuple[float, float, int] = (30, 1, 20)
) -> AsyncIterator[Service]:
    """`python -m gateway sandbox` on 127.0.0.1 with the given (global/s, chat/s, group/min)."""
    port = free_port()
    per_second, chat_per_second, group_per_minute = limits
    options = (
        f"--host 127.0.0.1 --port {port} --global-per-second {per_second:g} "
        f"--chat-per-second {chat_per_second:g} --group-per-minute {group_per_minute} "
        "--log-level warning"
    )
    argv = [PYTHON, "-m", "gateway", "sandbox", *options.split()]
    url = f"http://127.0.0.1:{port}"
    cwd = workdir / "sandbox"  # its own directory: nothing there may shadow a package
    cwd.mkdir(exist_ok=True)
    async with running("sandbox", argv, cwd, clean_env({}), url, "/sandbox/stats", http) as s:
        yield s


@asynccontextmanager
async def gateway_process(
    ws: Workspace,
    sandbox_url: str,
    http: aiohttp.ClientSession,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> AsyncIterator[Service]:
    """`python -m gateway run` in the workspace with the durable SQLite queue (`log_level`
    "info", the gateway's default, writes an access log line per request)."""
    argv = [*GATEWAY_ARGV[:-1], log_level]
    async with running(
        "gateway",
        argv,
        ws.root,
        gateway_env(ws, sandbox_url, env),
        ws.gateway_url,
        "/healthz",
        http,
    ) as service:
        yield service


def gateway_env(
    ws: Workspace, sandbox_url: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a gateway in `ws` talking to the sandbox: the SQLite queue unless
    `env` says otherwise."""
    settings = {
        "GATEWAY_SERVER_HOST": ws.host,
        "GATEWAY_SERVER_PUBLIC_URL": ws.gateway_url,
        "GATEWAY_TELEGRAM_API_BASE": sandbox_url,
        "GATEWAY_QUEUE_BACKEND": "sqlite",
        **(env or {}),
    }
    return clean_env(settings)


# --- clients ------------------------------------------------------------------------------------


def https_session(ws: Workspace, limit: int, timeout: float = 30.0) -> aiohttp.ClientSession:
    """A keep-alive HTTPS session trusting exactly the workspace certificate, sending the
    workspace's API token with every request."""
    context = client_ssl_context(ws.cert_path.read_bytes())
    connector = aiohttp.TCPConnector(ssl=context, limit=limit, limit_per_host=limit)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"Authorization": f"Bearer {ws.api_token}"},
    )


def plain_session(limit: int = 32, timeout: float = 30.0) -> aiohttp.ClientSession:
    """A session for the sandbox's plain-HTTP control API."""
    connector = aiohttp.TCPConnector(limit=limit)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


async def bounded_gather(jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run coroutine factories with at most `concurrency` at a time; results in job order."""
    results: dict[int, T] = {}
    cursor = iter(range(len(jobs)))

    async def lane() -> None:
        for index in cursor:
            results[index] = await jobs[index]()

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, len(jobs))))))
    return [results[index] for index in range(len(jobs))]


async def create_chats(http: aiohttp.ClientSession, sandbox_url: str, chats: Sequence[int]) -> None:
    """Create private chats quietly in the sandbox (the users 'started' the bot)."""

    async def create(chat_id: int) -> None:
        body = {"chat_id": chat_id, "type": "private", "bot_id": BOT_ID}
        async with http.post(f"{sandbox_url}/sandbox/chats", json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"creating chat {chat_id}: {resp.status} {await resp.text()}")

    await bounded_gather([functools.partial(create, chat) for chat in chats], 16)


async def sandbox_json(
    http: aiohttp.ClientSession, sandbox_url: str, method: str, path: str, **params: str
) -> Any:
    """Call the sandbox control API (`/sandbox/<path>`) and return its JSON answer."""
    url = f"{sandbox_url}/sandbox/{path}"
    async with http.request(method, url, params=params or None) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        return await resp.json()


async def chat_messages(http: aiohttp.ClientSession, sandbox_url: str, chat: int) -> list[Any]:
    """What the bot sent to `chat`, oldest first."""
    data = await sandbox_json(
        http, sandbox_url, "GET", f"chats/{chat}/messages", bot_id=str(BOT_ID)
    )
    return list(data["messages"])


async def scrape_metrics(http: aiohttp.ClientSession, gateway_url: str) -> dict[str, float]:
    """`GET /metrics`, each sample name summed over its labels."""
    async with http.get(f"{gateway_url}/metrics") as resp:
        text = await resp.text()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def enqueue_body(chat: int, text: str = "bench") -> bytes:
    """The JSON body of a short-form `/enqueue_command`."""
    return json.dumps({"chat_id": chat, "text": text}).encode()


JSON_HEADERS = {"Content-Type": "application/json"}


# --- measurements -------------------------------------------------------------------------------


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident set size (or another /proc/<pid>/status field), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (`pct` from 0 to 100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    """Where a result was measured."""
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        # Other work on the machine (e.g. a test suite) shows up here: these boxes are shared.
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` with the date and machine added; return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {
        "bench": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **result,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
