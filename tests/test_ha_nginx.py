"""deploy/nginx-ha.conf, tested: a real nginx in front of three replicas, the leader killed.

nginx runs from the file with only its addresses and certificate paths changed: TLS on port
8443 of the workspace's address (its certificate, uploaded to the sandbox with setWebhook),
plain HTTP to three replica processes on their own loopback addresses, and its own
connections from a fourth (`proxy_bind`, the replicas' trusted proxy). API clients and the
sandbox's webhook calls go through nginx only. The leader is SIGKILLed mid-stream: every
accepted command ends `sent`, clients see nothing but retryable answers, and the user's
messages sent meanwhile are all answered.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from gateway.sandbox import SandboxSettings
from tests.cluster_helpers import Cluster, Replica
from tests.conftest import USER, Sandbox, Workspace, free_loopback_address
from tests.test_proxy import NGINX, ROOT, run_nginx

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh does)"),
]

TOTAL = 300
CHATS = 10
CONCURRENCY = 8
SAYS = 20
#: What a client may see from the load balancer while a replica dies: retry with the key.
RETRYABLE = {0, 502, 503, 504}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=200, chat_per_second=50)


def ha_site(public: str, cert: Path, key: Path, upstreams: list[str], bind: str) -> str:
    """deploy/nginx-ha.conf with the test's addresses and certificate."""
    site = (ROOT / "deploy/nginx-ha.conf").read_text()
    replacements = {
        "listen 8443 ssl;": f"listen {public}:8443 ssl;",
        "/etc/letsencrypt/live/gateway.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/gateway.example.org/privkey.pem": str(key),
        "proxy_http_version 1.1;": f"proxy_http_version 1.1;\n    proxy_bind {bind};",
    }
    for n, upstream in enumerate(upstreams):
        replacements[f"server 10.0.0.1{n + 1}:8080"] = f"server {upstream}"
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    return site


async def test_nginx_in_front_of_three_replicas_hides_a_leader_kill(
    workspace: Workspace, sandbox: Sandbox, pg_dsn: str, tmp_path: Path
) -> None:
    public = workspace.host
    proxy_from = free_loopback_address()
    cert, key = workspace.root / "certs/certificate.pem", workspace.root / "certs/key.pem"
    hosts = [free_loopback_address() for _ in range(3)]
    assert len({public, proxy_from, *hosts}) == 5
    env = {
        "GATEWAY_SERVER_TLS": "false",
        "GATEWAY_SERVER_PORT": "8080",
        "GATEWAY_SERVER_PUBLIC_URL": f"https://{public}:8443",
        "GATEWAY_SERVER_CERTIFICATE": str(cert),
        "GATEWAY_TELEGRAM_UPLOAD_CERTIFICATE": "always",
        "GATEWAY_TELEGRAM_TRUSTED_PROXIES": f"{proxy_from}/32",
    }
    for chat in range(1, CHATS + 1):
        await sandbox.create_chat(chat)
    await sandbox.create_chat(USER)
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    site = ha_site(public, cert, key, [f"{h}:8080" for h in hosts], proxy_from)
    seen: Counter[int] = Counter()
    accepted: dict[int, str] = {}
    report: dict[str, object] = {}
    with run_nginx(nginx_dir, site):
        async with AsyncExitStack() as stack:
            cluster = Cluster(workspace, sandbox, pg_dsn, stack)

            def on(host: str) -> Callable[[Replica], None]:
                def configure(replica: Replica) -> None:
                    replica.host, replica.port, replica.tls = host, 8080, False

                return configure

            for host in hosts:
                await cluster.start(env, configure=on(host))
            first = await cluster.wait_for_leader()
            client = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=client_ssl_context(cert.read_bytes())),
                    timeout=aiohttp.ClientTimeout(total=15),
                    headers={"Authorization": f"Bearer {workspace.token}"},
                )
            )
            base = f"https://{public}:8443"
            for _ in range(100):  # nginx, then the leader's setWebhook
                hook = await sandbox.bot_api("getWebhookInfo")
                if hook["result"]["url"] == f"{base}/telegram/webhook":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"no webhook: {hook}")

            async def send(n: int) -> None:
                body = {"chat_id": n % CHATS + 1, "text": f"msg {n}"}
                headers = {"Idempotency-Key": f"k{n}"}
                for _ in range(50):
                    try:
                        async with client.post(
                            f"{base}/enqueue_command", json=body, headers=headers
                        ) as resp:
                            seen[resp.status] += 1
                            if resp.status in (200, 202):
                                accepted[n] = (await resp.json())["id"]
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        seen[0] += 1
                    await asyncio.sleep(0.2)

            async def stream() -> None:
                todo = list(range(TOTAL))

                async def worker() -> None:
                    while todo:
                        await send(todo.pop(0))

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

            async def users() -> None:  # webhook traffic through nginx, throughout
                for _ in range(SAYS):
                    await sandbox.say("/help")
                    await asyncio.sleep(0.1)

            async def kill_leader() -> float:
                while len(accepted) < TOTAL // 3:
                    await asyncio.sleep(0.01)
                leader = await cluster.leader()
                assert leader is not None and leader.proc is not None
                killed = time.monotonic()
                leader.proc.send_signal(signal.SIGKILL)
                leader.proc.wait(timeout=10)
                await cluster.wait_for_leader(but=leader)
                return time.monotonic() - killed

            failover, _, _ = await asyncio.gather(kill_leader(), stream(), users())
            assert sorted(accepted) == list(range(TOTAL)), "not every command was accepted"
            statuses: Counter[str] = Counter()
            for command_id in accepted.values():
                async with client.get(
                    f"{base}/commands/{command_id}",
                    params={"wait": "30"},
                    timeout=aiohttp.ClientTimeout(total=40),
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    statuses[(await resp.json())["status"]] += 1
            answers = await sandbox.wait_messages(USER, SAYS, timeout=30)
            report.update(
                {
                    "first_leader": first.name,
                    "failover_seconds": round(failover, 2),
                    "client_statuses": dict(seen),
                    "help_answers": len(answers),
                }
            )
    delivered: Counter[str] = Counter()
    for chat in range(1, CHATS + 1):
        delivered.update(m["text"] for m in await sandbox.messages(chat))
    report["sent_twice"] = sum(count - 1 for count in delivered.values() if count > 1)
    print(f"\nnginx HA test: {json.dumps(report)}")
    assert statuses == Counter({"sent": TOTAL}), (statuses, report)
    assert set(seen) <= {200, 202} | RETRYABLE, report
    assert len(answers) >= SAYS, report  # every /help the user sent was answered
    assert report["sent_twice"] <= CHATS, report  # at most one in flight per chat


def test_readme_carries_the_tested_upstream_block() -> None:
    readme = (ROOT / "README.md").read_text()
    site = (ROOT / "deploy/nginx-ha.conf").read_text()
    upstream = site[site.index("upstream telegram_gateway {") : site.index("}") + 1]
    assert upstream in readme
    assert "deploy/nginx-ha.conf" in readme
