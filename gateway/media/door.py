"""`/enqueue_command` with files: reading a JSON or multipart body, and the media checks.

Kept apart from `gateway.api` so the REST handler stays a short list of steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from gateway.config import Config
from gateway.errors import InputError
from gateway.http import read_json_object
from gateway.media.checks import short_media_bodies
from gateway.media.intake import FileInfo, read_multipart
from gateway.media.store import MediaStore
from gateway.validation import EnqueueRequest, check_enqueue


async def read_body(
    request: web.Request, config: Config, store: MediaStore
) -> tuple[dict[str, Any], dict[str, FileInfo]]:
    """A JSON body, or the `payload` and stored files of a multipart one."""
    if request.content_type == "multipart/form-data":
        return await read_multipart(
            request, store, config.media.max_upload_bytes, config.server.body_limit
        )
    return await read_json_object(request, config.server.body_limit), {}


def pop_fetch(body: dict[str, Any]) -> bool:
    """The envelope's `fetch` flag (the gateway downloads http(s) file URLs itself)."""
    value = body.pop("fetch", False)
    if not isinstance(value, bool):
        raise InputError("fetch must be true or false", code="invalid_type", field="fetch")
    return value


async def check_request(
    body: dict[str, Any], config: Config, allowed_users: Iterable[int], header: str | None
) -> EnqueueRequest:
    """`check_enqueue`, after turning a short-form media body into general-form ones."""
    commands = []
    key = None
    for one in short_media_bodies(body, allowed_users):
        parsed = await check_enqueue(
            one, allowed_users, header, config.delivery.long_text, config.delivery.max_text_length
        )
        commands.extend(parsed.commands)
        key = parsed.idempotency_key
    if not commands:
        raise InputError("no allowed users to send to", code="no_recipients", field="chat_id")
    return EnqueueRequest(commands, key)
