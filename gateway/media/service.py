"""The media service: files in at the door, files out to Telegram, and their cleanup.

At the door (`prepare`), every file parameter of a command is checked and, for a stored file,
recorded in `command.meta["media"]`; `link` then ties the files to the command before it is
queued. At send time (`sending`), each stored file becomes an upload, or the `file_id` Telegram
gave the same bytes before (`gateway_media_reused_total`), within a budget of bytes in flight;
`delivered` remembers the new file_ids. `run_collector` deletes files no command refers to.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from gateway import constants as c
from gateway.commands import Command
from gateway.config import MediaSettings
from gateway.configvalues import LongText
from gateway.egress import guarded_session, parse_networks
from gateway.errors import InputError
from gateway.media.checks import check_album, check_captions
from gateway.media.fetch import fetch_file
from gateway.media.intake import FileInfo, too_large
from gateway.media.refs import (
    CAPTION_REST_KEY,
    MEDIA_METHODS,
    META_KEY,
    attached_name,
    file_refs,
    is_url,
)
from gateway.media.store import MediaStore
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)


class MediaUnavailable(Exception):
    """A command's file is gone from the store (it cannot be sent any more)."""


class ByteBudget:
    """At most `limit` bytes of uploads in flight; a bigger one waits its turn."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = asyncio.Condition()

    @property
    def used(self) -> int:
        return self._used

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self._limit)
        if size <= 0:
            yield
            return
        async with self._cond:
            await self._cond.wait_for(lambda: self._used + size <= self._limit)
            self._used += size
        try:
            yield
        finally:
            async with self._cond:
                self._used -= size
                self._cond.notify_all()


class MediaService:
    """Files of commands: checked, stored, linked, sent, reused and collected."""

    def __init__(
        self, store: MediaStore, settings: MediaSettings, registry: CollectorRegistry
    ) -> None:
        self.store = store
        self.settings = settings
        self.networks = parse_networks(
            settings.fetch_allowed_networks, "[media] fetch_allowed_networks"
        )
        self.budget = ByteBudget(settings.max_bytes_in_flight)
        self._session: aiohttp.ClientSession | None = None
        self.reused = Counter(
            "gateway_media_reused",
            "Files sent by the file_id Telegram gave the same bytes before (no upload)",
            registry=registry,
        )
        self.uploaded = Counter(
            "gateway_media_uploaded", "Files uploaded to Telegram", registry=registry
        )

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.store.close()

    # --- at the door ------------------------------------------------------------------------

    async def prepare(
        self,
        commands: Iterable[Command],
        uploads: dict[str, FileInfo],
        fetch: bool,
        long_text: LongText,
    ) -> None:
        """Check every file parameter, fetch `fetch` URLs, and record the stored files."""
        used: set[str] = set()
        fetched: dict[str, FileInfo] = {}
        for command in commands:
            if command.method not in MEDIA_METHODS and command.method != "editMessageCaption":
                continue
            check_album(command)
            check_captions(command, long_text)
            files: dict[str, Any] = {}
            for ref in file_refs(command.method, command.params):
                field = f"params.{ref.path}"
                if not isinstance(ref.value, str) or not ref.value.strip():
                    raise InputError(
                        f"{field} must be attach://<part name>, an http(s) URL or a file_id",
                        code="invalid_type",
                        field=field,
                    )
                name = attached_name(ref.value)
                if name is None and fetch and is_url(ref.value):
                    if ref.value not in fetched:
                        fetched[ref.value] = await self._fetch(ref.value, field)
                    info = fetched[ref.value]
                    name = f"fetched-{info.sha256[:16]}"
                    ref.set(c.ATTACH_PREFIX + name)
                    uploads = {**uploads, name: info}
                if name is None:
                    continue  # a URL Telegram fetches, or a file_id: Telegram checks them
                if name not in uploads:
                    raise InputError(
                        f"{field}: {ref.value} names no file part of the request",
                        code="unknown_attachment",
                        field=field,
                    )
                info = uploads[name]
                if ref.kind == "photo" and info.size > self.settings.max_photo_bytes:
                    raise too_large(
                        field, info.size, self.settings.max_photo_bytes, "max_photo_bytes"
                    )
                files[name] = info.to_json()
                used.add(name)
            if files:
                command.meta[META_KEY] = files
        unused = sorted(set(uploads) - used - {n for n in uploads if n.startswith("fetched-")})
        if unused:
            raise InputError(
                f"the file part {unused[0]!r} is not referenced (attach://{unused[0]})",
                code="unreferenced_file",
                field=unused[0],
            )

    async def _fetch(self, url: str, field: str) -> FileInfo:
        if self._session is None:
            self._session = guarded_session(self.networks)
        return await fetch_file(
            self._session,
            url,
            self.networks,
            field,
            self.store,
            self.settings.max_upload_bytes,
            self.settings.fetch_timeout,
        )

    async def link(self, commands: Iterable[Command]) -> None:
        """Tie each command's files to it (durably) before it is queued."""
        for command in commands:
            for info in command.meta.get(META_KEY, {}).values():
                await self.store.link(str(info["sha256"]), command.id)

    # --- at send time -----------------------------------------------------------------------

    @staticmethod
    def handles(command: Command) -> bool:
        """Whether the command refers to files the gateway stores, or has a split caption."""
        return bool(command.meta.get(META_KEY)) or bool(command.meta.get(CAPTION_REST_KEY))

    @staticmethod
    def caption_rest(command: Command) -> list[str]:
        """The parts of a split caption after the first."""
        rest = command.meta.get(CAPTION_REST_KEY)
        return [str(part) for part in rest] if isinstance(rest, list) else []

    @staticmethod
    def messages(command: Command) -> int:
        """How many messages Telegram counts for the call (an album of N is N)."""
        media = command.params.get("media")
        if command.method == "sendMediaGroup" and isinstance(media, list):
            return max(1, len(media))
        return 1

    @asynccontextmanager
    async def sending(self, command: Command) -> AsyncIterator[dict[str, Any]]:
        """The call's parameters with stored files as uploads or reused file_ids."""
        infos = {n: FileInfo.from_json(d) for n, d in command.meta.get(META_KEY, {}).items()}
        params = copy.deepcopy(command.params)
        size = 0
        reused = 0
        for ref in file_refs(command.method, params):
            name = attached_name(ref.value)
            if name is None or name not in infos:
                continue
            info = infos[name]
            file_id = await self.store.file_id(info.sha256, ref.kind)
            if file_id is not None:
                ref.set(file_id)
                reused += 1
                continue
            upload = await self.store.input_file(info.sha256, info.filename, info.size)
            if upload is None:
                raise MediaUnavailable(f"the file {info.filename!r} is no longer stored")
            ref.set(upload)
            size += info.size
        async with self.budget.hold(size):
            yield params
        if reused:
            self.reused.inc(reused)

    async def delivered(self, command: Command, result: Any) -> None:
        """Remember the file_ids Telegram gave the uploaded files."""
        infos = {n: FileInfo.from_json(d) for n, d in command.meta.get(META_KEY, {}).items()}
        messages = result if isinstance(result, list) else [result]
        refs = list(file_refs(command.method, command.params))
        for index, ref in enumerate(refs):
            name = attached_name(ref.value)
            if name is None or name not in infos or index >= len(messages):
                continue
            file_id = _file_id_of(messages[index], ref.kind)
            if file_id is None:
                continue
            sha = infos[name].sha256
            if await self.store.file_id(sha, ref.kind) != file_id:
                self.uploaded.inc()
                await self.store.remember_file_id(sha, ref.kind, file_id)

    # --- cleanup ----------------------------------------------------------------------------

    async def collect(self, queue: Queue, grace: float = c.MEDIA_COLLECT_GRACE_SECONDS) -> int:
        """Delete files that no command in the queue refers to any more."""

        async def exists(command_id: str) -> bool:
            return await queue.get(command_id) is not None

        return await self.store.collect(exists, grace, time.time())

    async def run_collector(self, queue: Queue) -> None:
        """Collect now and then, for ever (a background task)."""
        while True:
            try:
                await self.collect(queue)
            except Exception:  # the next round tries again
                logger.exception("collecting unreferenced files failed")
            await asyncio.sleep(c.MEDIA_COLLECT_SECONDS)


def _file_id_of(message: Any, kind: str) -> str | None:
    if not isinstance(message, dict):
        return None
    value = message.get(kind)
    if kind == "photo" and isinstance(value, list) and value:
        value = value[-1]  # the largest size
    if isinstance(value, dict) and isinstance(value.get("file_id"), str):
        return str(value["file_id"])
    return None


def caption_part_params(params: dict[str, Any], first: Any, text: str) -> dict[str, Any]:
    """A later part of a split caption: a text reply to the message that carried the file."""
    out = {key: params[key] for key in CAPTION_PART_FIELDS if key in params}
    out["text"] = text
    if isinstance(first, dict) and isinstance(first.get("message_id"), int):
        out["reply_parameters"] = {"message_id": first["message_id"]}
    return out


#: What the text parts of a split caption keep of the file's call.
CAPTION_PART_FIELDS = (
    "chat_id",
    "parse_mode",
    "message_thread_id",
    "disable_notification",
    "protect_content",
)
