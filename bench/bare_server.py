"""The enqueue benchmark's baseline: aiohttp over the gateway's TLS set-up, and nothing else.

`POST /enqueue_command` parses the JSON body and answers 202 `{"id": "x", "status": "queued"}`
(no validation, no queue, no disk); `GET /healthz` answers 200. The listener is built exactly
like the gateway's (`gateway.certs.server_ssl_context`, `web.AppRunner` + `web.TCPSite`), so
the difference between the two is what the gateway does per request.

With `--queue PATH` it is the *durable* baseline instead: the handler also stores the body as
a command in the gateway's own SQLite queue (`SqliteQueue`, FULL durability) before its 202,
and does nothing else (no authentication, no validation, no worker). The gap between it and
the plain baseline is the price of durability alone on this machine.

    python bench/bare_server.py --host 127.1.2.3 --cert certificate.pem --key key.pem [--queue q.db]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from gateway.certs import load_certificate_pair, server_ssl_context
from gateway.commands import Command
from gateway.queue.sqlite import SqliteQueue

ACCEPTED = {"id": "x", "status": "queued"}
QUEUE = web.AppKey("queue", SqliteQueue)


async def enqueue(request: web.Request) -> web.Response:
    """Parse the body as the gateway would have to, (store it,) then accept it."""
    body = await request.json()
    if not isinstance(body, dict):
        return web.json_response({"error": "not an object"}, status=400)
    queue = request.app.get(QUEUE)
    if queue is not None:
        await queue.put([Command(method="sendMessage", params=body)])
    return web.json_response(ACCEPTED, status=202)


async def healthz(_: web.Request) -> web.Response:
    """Readiness probe."""
    return web.json_response({"status": "ok"})


def create_app(queue_path: Path | None = None) -> web.Application:
    """The baseline application: two routes (and the queue, for the durable baseline)."""
    app = web.Application()
    app.router.add_post("/enqueue_command", enqueue)
    app.router.add_get("/healthz", healthz)
    if queue_path is not None:

        async def queue_ctx(app: web.Application) -> AsyncIterator[None]:
            app[QUEUE] = SqliteQueue(queue_path)
            await app[QUEUE].open()
            yield
            await app[QUEUE].close()

        app.cleanup_ctx.append(queue_ctx)
    return app


async def serve(host: str, port: int, cert: Path, key: Path, queue: Path | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    context = server_ssl_context(load_certificate_pair(cert, key))
    runner = web.AppRunner(create_app(queue))
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
    """Command line: --host, --port, --cert, --key, --queue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--queue", type=Path, help="store each body in a SqliteQueue here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.cert, args.key, args.queue))


if __name__ == "__main__":
    main()
