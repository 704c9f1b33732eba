"""Replay refusal survives restarts: a captured signed request stays used up after a SIGTERM
restart and after a SIGKILL restart of a real gateway process (SQLite queue)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.certs import client_ssl_context
from gateway.clients import add_client
from gateway.guards import SIGNATURE_HEADER, sign
from tests.conftest import USER, Sandbox, Workspace
from tests.test_crash import gateway_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_captured_request_is_refused_after_sigterm_and_sigkill_restarts(
    workspace: Workspace, sandbox: Sandbox, tmp_path: Path
) -> None:
    token, secret = add_client(workspace.clients_file, "signer", signing=True)
    assert secret is not None
    cert = (workspace.root / "certs/certificate.pem").read_bytes()
    url = f"https://{workspace.host}:8443/enqueue_command"
    log = tmp_path / "gateway.log"

    def captured(text: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"chat_id": USER, "text": text}).encode()
        return body, {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }

    connector = aiohttp.TCPConnector(ssl=client_ssl_context(cert))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(request: tuple[bytes, dict[str, str]]) -> tuple[int, str]:
            body, headers = request
            async with http.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.text()

        first = captured("before the SIGTERM")
        async with gateway_process(workspace, sandbox, http, log):
            assert (await post(first))[0] == 202
            status, text = await post(first)  # the in-memory path refuses it too
            assert status == 401 and "replay" in text
        # gateway_process ends with terminate(): SIGTERM, a clean shutdown.

        second = captured("before the SIGKILL")
        async with gateway_process(workspace, sandbox, http, log) as proc:
            status, text = await post(first)
            assert status == 401 and "replay" in text, text
            assert (await post(second))[0] == 202
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

        async with gateway_process(workspace, sandbox, http, log):
            for request in (first, second):
                status, text = await post(request)
                assert status == 401 and "replay" in text, text
            assert (await post(captured("a fresh one")))[0] == 202
