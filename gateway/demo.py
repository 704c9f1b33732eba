"""Sandbox mode's demo service: an internal service to show command routing offline.

It answers `/echo <words>` with the words, like any service behind a `[[routes]]` entry would,
and checks the gateway's signature on every call the way a real service should.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from gateway.guards import SIGNATURE_HEADER, check_signature
from gateway.routes import Route
from gateway.secretfiles import Secret

COMMAND = "echo"


def demo_app(key: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        if check_signature(key, body, request.headers.get(SIGNATURE_HEADER), time.time()):
            return web.json_response({"error": "bad signature"}, status=401)
        args = json.loads(body).get("args") or ["(nothing)"]
        return web.json_response({"text": "echo: " + " ".join(args)})

    app = web.Application()
    app.router.add_post(f"/{COMMAND}", echo)
    return app


@asynccontextmanager
async def demo_service(host: str) -> AsyncIterator[Route]:
    """Run the demo service on `host` (a free port); yields the route that reaches it."""
    key = secrets.token_urlsafe(32)
    runner = web.AppRunner(demo_app(key), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        yield Route(
            command=COMMAND,
            url=f"http://{host}:{port}/{COMMAND}",
            secret=Secret(key),
            timeout_s=5.0,
            description="Demo service: /echo <words> answers with the words",
        )
    finally:
        await runner.cleanup()
