"""The REST API services call: `/enqueue_command` and `/healthz`."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway import constants as c
from gateway import keys
from gateway.http import read_json_object
from gateway.validation import parse_enqueue

logger = logging.getLogger(__name__)


async def enqueue_command(request: web.Request) -> web.Response:
    """`POST /enqueue_command`: accept a message (or a Bot API call) for delivery → 202."""
    app = request.app
    config = app[keys.CONFIG]
    body = await read_json_object(request, config.server.body_limit)
    parsed = parse_enqueue(body, config.allowed_users, request.headers.get(c.IDEMPOTENCY_HEADER))
    commands = await app[keys.OUTBOX].submit(parsed.commands)
    logger.info(
        "accepted %d command(s) %s from %s",
        len(commands),
        ",".join(command.id for command in commands),
        request.remote,
    )
    answer: dict[str, object] = {"id": commands[0].id, "status": commands[0].status.value}
    if len(commands) > 1:
        answer["ids"] = [command.id for command in commands]
    return web.json_response(answer, status=202)


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: 200 when the worker runs and Telegram has our webhook, else 503."""
    app = request.app
    worker_ok = app[keys.WORKER].running
    webhook = app[keys.WEBHOOK]
    if worker_ok and webhook.registered:
        return web.json_response({"status": "ok"})
    body: dict[str, object] = {
        "status": "unavailable",
        "worker": "running" if worker_ok else "stopped",
        "webhook": "set" if webhook.registered else "not set",
    }
    if webhook.error:
        body["detail"] = webhook.error
    return web.json_response(body, status=503)


def add_routes(app: web.Application) -> None:
    """Mount the REST API."""
    app.router.add_post(c.ENQUEUE_PATH, enqueue_command)
    app.router.add_get(c.HEALTH_PATH, healthz)
