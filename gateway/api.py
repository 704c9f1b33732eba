"""The REST API services call: `/enqueue_command` and `/healthz`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from gateway import constants as c
from gateway import keys
from gateway.auth import CLIENT
from gateway.chatdefaults import apply_chat_defaults
from gateway.clients import ApiClient
from gateway.commands import Command
from gateway.egress import check_callbacks
from gateway.errors import InputError, StorageError
from gateway.media.door import check_request, pop_fetch, read_body
from gateway.openapi import build_openapi
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)


async def enqueue_command(request: web.Request) -> web.Response:
    """`POST /enqueue_command`: accept a message (or a Bot API call) for delivery → 202."""
    app = request.app
    config = app[keys.CONFIG]
    media = app[keys.MEDIA]
    body, uploads = await read_body(request, config, media.store)
    fetch = pop_fetch(body)
    dispatch = await _reply_target(app[keys.QUEUE], body)
    if dispatch is not None:
        body = {**body, "chat_id": dispatch.params["chat_id"]}
        del body["reply_to"]
    parsed = await check_request(
        body, config, config.allowed_users, request.headers.get(c.IDEMPOTENCY_HEADER)
    )
    if dispatch is not None:  # an answer to a user's command, delivered as a reply to it
        for command in parsed.commands:
            command.params["reply_parameters"] = {"message_id": dispatch.meta["message_id"]}
            command.meta["reply_to"] = dispatch.id
            if "thread_id" in dispatch.meta:  # a command from a forum topic: answer there
                command.params.setdefault("message_thread_id", dispatch.meta["thread_id"])
    apply_chat_defaults(parsed.commands, config.chat_defaults)
    client = request[CLIENT]
    check_scope(client, parsed.commands)
    await check_callbacks(parsed.commands, app[keys.SERVICES].callback_networks)
    await media.prepare(parsed.commands, uploads, fetch, config.delivery.long_text)
    await media.link(parsed.commands)
    for command in parsed.commands:
        command.client = client.name
    # Keys are per client: one client cannot learn about another's commands through them.
    key = f"{client.name}:{parsed.idempotency_key}" if parsed.idempotency_key else None
    commands, original = await app[keys.OUTBOX].submit_once(parsed.commands, key)
    if original is not None:
        logger.info("idempotent repeat of %s from %s", original.id, request.remote)
        return web.json_response(
            {"id": original.id, "status": original.status.value, "duplicate": True}
        )
    app[keys.METRICS].accepted_commands(commands)
    if logger.isEnabledFor(logging.DEBUG):  # request.remote is not free: only when logged
        logger.debug(
            "accepted %d command(s) %s from %s",
            len(commands),
            ",".join(command.id for command in commands),
            request.remote,
        )
    answer: dict[str, object] = {"id": commands[0].id, "status": commands[0].status.value}
    if len(commands) > 1:
        answer["ids"] = [command.id for command in commands]
    return web.json_response(answer, status=202)


async def get_command(request: web.Request) -> web.Response:
    """`GET /commands/{id}[?wait=N]`: a command's status; `wait` holds until it is final."""
    app = request.app
    command_id = request.match_info["id"]
    wait = _wait_seconds(request.query.get("wait"))
    command = await app[keys.QUEUE].get(command_id)
    client = request[CLIENT]
    if command is not None and command.client is None:
        # The gateway's own commands (dispatches, replies) are visible to clients of their chat.
        visible = client.may_send_to(command.chat_id)
    else:
        visible = command is not None and command.client == client.name
    if command is None or not visible:
        # Another client's command is answered exactly like one that does not exist.
        raise InputError(f"no command {command_id!r}", code="not_found", status=404)
    if wait > 0 and not command.status.final:
        await app[keys.WORKER].wait_final(command_id, wait)
        command = await app[keys.QUEUE].get(command_id) or command
    return web.json_response(command.public())


async def _reply_target(queue: Queue, body: dict[str, Any]) -> Command | None:
    """The dispatch a `"reply_to": "<dispatch id>"` names (chat and message come from it)."""
    reply_to = body.get("reply_to")
    if reply_to is None:
        return None
    if "method" in body:
        raise InputError(
            "reply_to goes with the short form (text)", code="conflicting_fields", field="reply_to"
        )
    if not isinstance(reply_to, str) or not reply_to:
        raise InputError("reply_to must be a dispatch id", code="invalid_type", field="reply_to")
    dispatch = await queue.get(reply_to)
    if dispatch is None or dispatch.method != c.DISPATCH_METHOD:
        raise InputError(
            f"reply_to: no dispatched command {reply_to!r}",
            code="unknown_dispatch",
            field="reply_to",
        )
    if body.get("chat_id") not in (None, dispatch.params["chat_id"]):
        raise InputError(
            "chat_id differs from the chat of the command replied to",
            code="conflicting_fields",
            field="chat_id",
        )
    return dispatch


def check_scope(client: ApiClient, commands: Iterable[Command]) -> None:
    """403, naming what was refused, when a command is outside the client's scope."""
    for command in commands:
        if not client.may_call(command.method):
            raise InputError(
                f"client {client.name!r} may not call {command.method}",
                code="forbidden_method",
                field="method",
                status=403,
            )
        if not client.may_send_to(command.chat_id):
            raise InputError(
                f"client {client.name!r} may not send to chat {command.chat_id}",
                code="forbidden_chat",
                field="chat_id",
                status=403,
            )


def _wait_seconds(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= c.MAX_WAIT_SECONDS:
        raise InputError(
            f"wait must be a number of seconds from 0 to {c.MAX_WAIT_SECONDS:g}",
            code="invalid_wait",
            field="wait",
        )
    return value


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics` in Prometheus' text format."""
    registry = request.app[keys.METRICS]
    queue = request.app[keys.QUEUE]
    registry.depth.set(await queue.depth())
    size = queue.storage_bytes()
    if size is not None:
        registry.database_bytes.set(size)
    replica = request.app.get(keys.REPLICA)
    if replica is not None:
        registry.leader.set(int(replica.leadership.role == "leader"))
        registry.elections.set(replica.leadership.elections)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: `ok`, `degraded` (200: accepting works, delivery is held up) or
    `unavailable` (503: accepting would fail, or the worker or the webhook is down).

    Unauthenticated, so the reasons say what kind of trouble, never which chat or file.
    """
    app = request.app
    queue, worker, webhook = app[keys.QUEUE], app[keys.WORKER], app[keys.WEBHOOK]
    down: list[str] = []
    held_up: list[str] = []
    problem = queue.problem()
    held = 0
    if problem is None:
        try:
            held = await queue.held_lanes(time.time() - c.HELD_LANE_SECONDS)
        except StorageError as exc:
            problem = exc.reason
    if problem is not None:
        down.append(f"queue storage unavailable: {problem}")
    replica = app.get(keys.REPLICA)
    if replica is not None:  # one of several: only the leader delivers and sets the webhook
        if not replica.leadership.connected and problem is None:
            down.append("the replica's database session is down")
    else:
        if not worker.running:
            down.append("the delivery worker is stopped")
        if not webhook.registered:
            down.append("Telegram does not have the webhook")
    paused = app[keys.FLOOD].paused_for()
    if paused > 0:
        held_up.append(f"Telegram paused sending to every chat for {math.ceil(paused)}s more")
    if app[keys.FLOOD].paid_fallen_back:
        held_up.append("paid broadcast unavailable (the bot's Stars ran out): free rate only")
    if held:
        held_up.append(
            f"{held} chat(s) held up: their oldest message has waited over "
            f"{c.HELD_LANE_SECONDS:g}s or failed an attempt"
        )
    status = "unavailable" if down else "degraded" if held_up else "ok"
    body: dict[str, object] = {
        "status": status,
        "reasons": down + held_up,
        "worker": "running" if worker.running else "stopped",
        "webhook": "set" if webhook.registered else "not set",
        "storage": "ok" if problem is None else "unavailable",
        "held_chats": held,
        "paused_seconds": round(paused, 1),
    }
    if webhook.error:
        body["detail"] = webhook.error
    if replica is not None:
        body.update(replica.health())
    return web.json_response(body, status=503 if down else 200)


async def openapi(request: web.Request) -> web.Response:
    """`GET /openapi.json`: the API's OpenAPI document (unauthenticated, like /healthz)."""
    return web.json_response(build_openapi(request.app[keys.CONFIG]))


def add_routes(app: web.Application) -> None:
    """Mount the REST API."""
    app.router.add_post(c.ENQUEUE_PATH, enqueue_command)
    app.router.add_get(c.COMMANDS_PATH + "/{id}", get_command)
    app.router.add_get(c.HEALTH_PATH, healthz)
    app.router.add_get(c.METRICS_PATH, metrics)
    app.router.add_get(c.OPENAPI_PATH, openapi)
