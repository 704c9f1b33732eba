"""SIGHUP reloads the API clients file at once, even when the file watcher cannot see a change.

The gateway runs as a real subprocess (`python -m gateway run`: the signal handler is the CLI's).
The clients file is rewritten with another token of the same length and its modification time
put back, so the 2-second watcher sees the same (mtime, size) and keeps the old clients: only
the signal can make the new token work.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from gateway import constants as c
from gateway.certs import client_ssl_context
from gateway.clients import hash_token
from tests.conftest import Sandbox, Workspace
from tests.test_crash import gateway_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

NEW_TOKEN = "sighup-" + "x" * 40


async def status_with(http: aiohttp.ClientSession, url: str, token: str) -> int:
    """The status of an authenticated status request for a command that does not exist."""
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{url}/commands/no-such-command", headers=headers) as resp:
        return resp.status


async def test_sighup_reloads_the_clients_file_the_watcher_cannot_see(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    url = f"https://{workspace.host}:8443"
    context = client_ssl_context((workspace.root / "certs/certificate.pem").read_bytes())
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        gateway_process(workspace, sandbox, http, tmp_path / "gw.log") as proc,
    ):
        assert await status_with(http, url, workspace.token) == 404  # known: not found
        assert await status_with(http, url, NEW_TOKEN) == 401

        path = workspace.clients_file
        before = path.stat()
        text = path.read_text()
        old_hash = re.search(r'token_sha256 = "([0-9a-f]{64})"', text)
        assert old_hash is not None
        path.write_text(text.replace(old_hash.group(1), hash_token(NEW_TOKEN)))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_size == before.st_size

        # Two watcher ticks: the change is invisible to it, the old token still works.
        await asyncio.sleep(2 * c.CLIENTS_RELOAD_SECONDS + 0.5)
        assert await status_with(http, url, NEW_TOKEN) == 401
        assert await status_with(http, url, workspace.token) == 404

        proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            if await status_with(http, url, NEW_TOKEN) == 404:
                break
            await asyncio.sleep(0.1)
        assert await status_with(http, url, NEW_TOKEN) == 404
        assert await status_with(http, url, workspace.token) == 401
        assert proc.poll() is None  # SIGHUP reloads; it does not stop the gateway
    log = (tmp_path / "gw.log").read_text()
    assert NEW_TOKEN not in log and "Traceback" not in log

