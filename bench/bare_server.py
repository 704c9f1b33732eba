"""The enqueue benchmark's baseline: aiohttp over the gateway's TLS set-up, and nothing else.

`POST /enqueue_command` parses the JSON body and answers 202 `{"id": "x", "status": "queued"}`
(no validation, no queue, no disk); `GET /healthz` answers 200. The listener is built exactly
like the gateway's (`gateway.certs.server_ssl_context`, `web.AppRunner` + `web.TCPSite`), so
the difference between the two is what the gateway does per request.

    python bench/bare_server.py --host 127.1.2.3 --cert certificate.pem --key key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from aiohttp import web

from gateway.certs import load_certificate_pair, server_ssl_context

ACCEPTED = {"id": "x", "status": "queued"}


async def enqueue(request: web.Request) -> web.Response:
    """Parse the body as the gateway would have to, then accept it."""
    body = await request.json()
    if not isinstance(body, dict):
        return web.json_response({"error": "not an object"}, status=400)
    return web.json_response(ACCEPTED, status=202)


async def healthz(_: web.Request) -> web.Response:
    """Readiness probe."""
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    """The baseline application: two routes."""
    app = web.Application()
    app.router.add_post("/enqueue_command", enqueue)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int, cert: Path, key: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    context = server_ssl_context(load_certificate_pair(cert, key))
    runner = web.AppRunner(create_app())
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Command line: --host, --port, --cert, --key."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.cert, args.key))


if __name__ == "__main__":
    main()
