"""Reverse-proxy mode behind a real nginx: `tls = false`, `upload_certificate`, real addresses.

nginx (the Debian package; scripts/test.sh installs it) runs from `deploy/nginx.conf` with only
its addresses and certificate paths changed: TLS on port 8443 of a loopback address with a
certificate made at test time, plain HTTP to the gateway on another, and its own connections to
the gateway from a third (`proxy_bind`), so the gateway can tell the proxy from the clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from gateway.config import load_config
from gateway.errors import ConfigError
from tests.conftest import USER, GatewayFactory, Sandbox, Workspace, free_loopback_address
from tests.test_cli import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = pytest.mark.timeout(120)


@contextmanager
def nginx(
    workdir: Path, listen: str, cert: Path, key: Path, upstream: str, bind: str
) -> Iterator[None]:
    """nginx from deploy/nginx.conf, in the foreground, with its files under `workdir`."""
    assert NGINX is not None
    site = (ROOT / "deploy/nginx.conf").read_text()
    replacements = {
        "listen 8443 ssl;": f"listen {listen}:8443 ssl;",
        "/etc/letsencrypt/live/gateway.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/gateway.example.org/privkey.pem": str(key),
        "proxy_pass http://127.0.0.1:8080;": f"proxy_pass http://{upstream};\n"
        f"        proxy_bind {bind};",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    with run_nginx(workdir, site):
        yield


@contextmanager
def run_nginx(workdir: Path, site: str) -> Iterator[None]:
    """nginx in the foreground with `site` in its http block and its files under `workdir`;
    stopped (SIGTERM, then SIGKILL) when the block ends."""
    assert NGINX is not None
    temp = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    main = "\n".join(
        [
            "user root;" if os.geteuid() == 0 else "",
            "worker_processes 1;",
            "daemon off;",
            f"pid {workdir}/nginx.pid;",
            f"error_log {workdir}/error.log;",
            "events { worker_connections 64; }",
            "http {",
            f"    access_log {workdir}/access.log;",
            *(f"    {name}_temp_path {workdir}/{name};" for name in temp),
            site,
            "}",
        ]
    )
    conf = workdir / "nginx.conf"
    conf.write_text(main)
    proc = subprocess.Popen(
        [NGINX, "-p", str(workdir), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")
async def test_gateway_behind_nginx_sees_real_clients(
    gateway_factory: GatewayFactory,
    workspace: Workspace,
    sandbox: Sandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    public = workspace.host  # nginx: TLS on public:8443 with the workspace's certificate
    inside, proxy_from, client_from = (free_loopback_address() for _ in range(3))
    port = free_port(inside)
    await sandbox.create_chat(USER)
    env = {
        "GATEWAY_SERVER_TLS": "false",
        "GATEWAY_SERVER_HOST": inside,
        "GATEWAY_SERVER_PORT": str(port),
        "GATEWAY_SERVER_CERTIFICATE": str(workspace.root / "certs/certificate.pem"),
        # nginx's certificate is self-signed: only "always" uploads it (auto: no upload).
        "GATEWAY_TELEGRAM_UPLOAD_CERTIFICATE": "always",
        "GATEWAY_TELEGRAM_TRUSTED_PROXIES": f"{proxy_from}/32",
        # Webhook calls only from the sandbox's address: nginx's own would be refused.
        "GATEWAY_TELEGRAM_WEBHOOK_IP_ALLOWLIST": "true",
        "GATEWAY_TELEGRAM_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    cert, key = workspace.root / "certs/certificate.pem", workspace.root / "certs/key.pem"
    caplog.set_level(logging.INFO)
    with nginx(nginx_dir, public, cert, key, f"{inside}:{port}", proxy_from):
        async with gateway_factory(env=env) as gw:
            assert gw.url == f"https://{public}:8443"
            # The gateway itself speaks plain HTTP.
            async with (
                aiohttp.ClientSession() as plain,
                plain.get(f"http://{inside}:{port}/healthz") as resp,
            ):
                assert resp.status == 200
            connector = aiohttp.TCPConnector(
                ssl=client_ssl_context(cert.read_bytes()), local_addr=(client_from, 0)
            )
            async with aiohttp.ClientSession(connector=connector) as http:
                for _ in range(100):  # nginx may take a moment to listen
                    try:
                        async with http.get(f"{gw.url}/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                body = {"text": "through nginx", "chat_id": USER, "idempotency_key": "k1"}
                for expected in (202, 200):  # the repeat is logged with the client's address
                    async with http.post(
                        f"{gw.url}/enqueue_command", json=body, headers=gw.auth
                    ) as resp:
                        assert resp.status == expected, await resp.text()
                        command = (await resp.json())["id"]
                async with http.get(
                    f"{gw.url}/commands/{command}?wait=20", headers=gw.auth
                ) as resp:
                    assert (await resp.json())["status"] == "sent"
            # A user writes: the sandbox delivers the update to nginx, which forwards it.
            await sandbox.say("/help")
            messages = await sandbox.wait_messages(USER, 2)
            assert "Telegram Gateway" in messages[-1]["text"]
            hook = await sandbox.bot_api("getWebhookInfo")
            assert hook["result"]["url"] == gw.config.webhook_url
            assert hook["result"]["pending_update_count"] == 0
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"from {client_from}" in line for line in lines if "idempotent" in line)
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(line.startswith(client_from) and "/enqueue_command" in line for line in access)
    assert any(line.startswith("127.0.0.1") and "/telegram/webhook" in line for line in access)
    assert not any(line.startswith(proxy_from) for line in access)
    assert not any("webhook call from" in line for line in lines)  # nothing refused


def test_plain_http_binds_loopback_unless_host_is_given(tmp_path: Path) -> None:
    env = {"GATEWAY_SERVER_TLS": "false", "GATEWAY_SERVER_PUBLIC_URL": "https://gw.example:443"}
    config = load_config(None, env, base_dir=tmp_path)
    assert config.server.host == "127.0.0.1"
    given = load_config(None, {**env, "GATEWAY_SERVER_HOST": "0.0.0.0"}, base_dir=tmp_path)
    assert given.server.host == "0.0.0.0"
    with pytest.raises(ConfigError, match="public_url is required with tls = false"):
        load_config(None, {"GATEWAY_SERVER_TLS": "false"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="UPLOAD_CERTIFICATE must be one of auto, always, never"):
        load_config(None, {**env, "GATEWAY_TELEGRAM_UPLOAD_CERTIFICATE": "x"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"needs \[server\] certificate"):
        load_config(
            None, {**env, "GATEWAY_TELEGRAM_UPLOAD_CERTIFICATE": "always"}, base_dir=tmp_path
        )


def test_readme_carries_the_tested_nginx_configuration() -> None:
    readme = (ROOT / "README.md").read_text()
    site = (ROOT / "deploy/nginx.conf").read_text()
    block = site[site.index("server {") :].strip()
    assert block in readme
