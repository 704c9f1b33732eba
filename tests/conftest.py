"""Shared fixtures: a real sandbox, a real gateway over real TLS, both on loopback.

The gateway listens on port 8443 (one of the four Telegram allows, so the sandbox can stay
faithful about ports) on a random address of 127.0.0.0/8, with a certificate for that address
generated at test time.
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.certs import client_ssl_context, write_certificate
from gateway.clients import add_client
from gateway.config import Config, load_config
from gateway.sandbox import SandboxSettings
from gateway.server import serve
from tests.pg_helpers import PgServer, running_postgres
from tests.sandbox_helpers import running_sandbox

TOKEN = "4242:test-token-abcdef"
BOT_ID = 4242
USER = 1111
OTHER_USER = 2222


def free_loopback_address() -> str:
    """A 127.x.y.z address whose port 8443 is free right now."""
    for _ in range(50):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as sock:
            try:
                sock.bind((host, 8443))
            except OSError:
                continue
        return host
    raise RuntimeError(
        "no free loopback address with port 8443: is something (a gateway on 0.0.0.0:8443?) "
        "holding port 8443 on every address? The tests need it free."
    )


@dataclass
class Sandbox:
    """A running sandbox and a client for its control API."""

    url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def say(self, text: str, user_id: int = USER, **extra: Any) -> dict[str, Any]:
        """A user writes to the bot."""
        body = {"user_id": user_id, "text": text, "bot_id": BOT_ID, **extra}
        async with self.http.post(f"{self.url}/sandbox/messages", json=body) as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    async def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """What the bot sent to `chat_id`, oldest first."""
        url = f"{self.url}/sandbox/chats/{chat_id}/messages"
        async with self.http.get(url, params={"bot_id": str(BOT_ID)}) as resp:
            if resp.status == 404:
                return []
            assert resp.status == 200, await resp.text()
            data = await resp.json()
            return list(data["messages"] if isinstance(data, dict) else data)

    async def wait_messages(
        self, chat_id: int, count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll until the chat has at least `count` bot messages."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.messages(chat_id)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.05)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the sandbox's control API; returns the JSON answer."""
        url = f"{self.url}/sandbox/{path}"
        async with self.http.request(method, url, json=body) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def create_chat(self, chat_id: int, kind: str = "private") -> None:
        """A chat the bot may write to (for a private chat: the user has started the bot)."""
        body = {"chat_id": chat_id, "type": kind, "bot_id": BOT_ID}
        if kind != "private":
            body["title"] = f"chat {chat_id}"
        await self.control("POST", "chats", body)

    async def bot_api(self, method: str, **params: Any) -> dict[str, Any]:
        """Call the Bot API as the gateway's bot."""
        async with self.http.post(f"{self.url}/bot{TOKEN}/{method}", json=params) as resp:
            data: dict[str, Any] = await resp.json()
            return data


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    """Telegram's default limits; a test module may override this fixture."""
    return SandboxSettings()


@pytest.fixture
async def sandbox(sandbox_settings: SandboxSettings) -> AsyncIterator[Sandbox]:
    """A sandbox on 127.0.0.1."""
    async with run_sandbox(sandbox_settings) as box:
        yield box


@asynccontextmanager
async def run_sandbox(settings: SandboxSettings) -> AsyncIterator[Sandbox]:
    """A sandbox on 127.0.0.1 (random port), as the gateway's tests drive it."""
    async with running_sandbox(settings) as client:
        yield Sandbox(client.base, client.http, client.app)


def terminate(proc: subprocess.Popen[Any]) -> None:
    """Stop a subprocess: SIGTERM, then SIGKILL if it is still there after 20 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Gateway:
    """A running gateway and an HTTPS client that trusts its certificate."""

    config: Config
    app: web.Application
    url: str
    http: aiohttp.ClientSession
    #: The test client's API token, and the header that presents it.
    token: str
    auth: dict[str, str]

    async def enqueue(
        self, body: Any, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        """POST /enqueue_command as the test client (extra `headers` win)."""
        url = f"{self.url}/enqueue_command"
        all_headers = {**self.auth, **(headers or {})}
        async with self.http.post(url, json=body, headers=all_headers, **kwargs) as resp:
            return resp.status, await resp.json()

    async def command(self, command_id: str, wait: float = 0) -> dict[str, Any]:
        """`GET /commands/{id}`, waiting up to `wait` seconds for a final status."""
        params = {"wait": str(wait)} if wait else {}
        url = f"{self.url}/commands/{command_id}"
        async with self.http.get(url, params=params, headers=self.auth) as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data


@dataclass
class Workspace:
    """A temporary project directory: config and secrets files for one gateway."""

    root: Path
    host: str
    #: Token of the "tests" API client (every chat, every method).
    token: str = ""

    @property
    def clients_file(self) -> Path:
        return self.root / "config/secrets/api_clients.toml"

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative.startswith("config/secrets/"):
            path.chmod(0o600)  # the gateway refuses secrets files others can read
        return path

    def config(self, api_base: str, env: dict[str, str] | None = None, toml: str = "") -> Config:
        self.write("config/gateway.toml", toml)
        base_env = {
            "GATEWAY_SERVER_HOST": self.host,
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{self.host}:8443",
            "GATEWAY_TELEGRAM_API_BASE": api_base,
        }
        return load_config(None, {**base_env, **(env or {})}, base_dir=self.root)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Secrets files of the original layout, and a certificate for a loopback address."""
    host = free_loopback_address()
    ws = Workspace(tmp_path, host)
    ws.write("config/secrets/bot_api.txt", TOKEN + "\n")
    ws.write("config/secrets/allowed_user.txt", f"# the team\n{USER}\n")
    write_certificate(tmp_path / "certs", host, 30)
    ws.token, _ = add_client(ws.clients_file, "tests")
    return ws


GatewayFactory = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def gateway_factory(workspace: Workspace, sandbox: Sandbox) -> GatewayFactory:
    """Start a gateway (as `async with`) against the sandbox, with optional config tweaks."""

    @asynccontextmanager
    async def start(env: dict[str, str] | None = None, toml: str = "") -> AsyncIterator[Gateway]:
        config = workspace.config(sandbox.url, env, toml)
        context = client_ssl_context(config.certificate_path.read_bytes())
        async with (
            serve(config) as app,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        ):
            auth = {"Authorization": f"Bearer {workspace.token}"}
            yield Gateway(config, app, config.public_url, http, workspace.token, auth)

    return start


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> AsyncIterator[Gateway]:
    """A gateway with the default configuration, its webhook set in the sandbox."""
    async with gateway_factory() as gw:
        yield gw


def tls_client_context(cert_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate."""
    return client_ssl_context(cert_pem)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One private PostgreSQL server for the session (tests/pg_helpers.py), started on demand.

    Skipped only when PostgreSQL is not installed (scripts/test.sh installs it when it can).
    """
    try:
        with running_postgres() as server:
            yield server
    except FileNotFoundError as exc:
        pytest.skip(f"{exc}: run scripts/test.sh as root to install Debian's postgresql")


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """The DSN of a fresh, empty database of its own for this test."""
    return pg_server.new_database()
