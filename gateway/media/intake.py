"""`multipart/form-data` requests: a `payload` part with the JSON body, and file parts.

Each file part is streamed to the media store chunk by chunk (never whole in memory), counted
against `[media] max_upload_bytes` as it arrives (413 naming the limit the moment it is
exceeded), and synced to disk before the request is answered.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import constants as c
from gateway.errors import InputError
from gateway.media.store import MediaStore

#: Names a file part may have (they are referenced as `attach://<name>`).
PART_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Most file parts in one request (an album holds at most 10 files).
MAX_FILE_PARTS = 10


@dataclass(frozen=True)
class FileInfo:
    """A file the gateway holds for a command: digest, size, and how it was named."""

    sha256: str
    size: int
    filename: str
    mime_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "filename": self.filename,
            "mime_type": self.mime_type,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileInfo:
        return cls(
            str(data["sha256"]), int(data["size"]), str(data["filename"]), str(data["mime_type"])
        )


def too_large(what: str, size: int | None, limit: int, key: str) -> InputError:
    """413 naming the limit (and the setting that holds it)."""
    got = f" is {size} bytes" if size is not None else " is too large"
    return InputError(
        f"{what}{got}; the limit is {limit} bytes ([media] {key})",
        code="file_too_large",
        field=what,
        status=413,
    )


async def read_multipart(
    request: web.Request, store: MediaStore, max_file: int, body_limit: int
) -> tuple[dict[str, Any], dict[str, FileInfo]]:
    """The JSON body of the `payload` part and the files of the other parts, stored."""
    holder: list[dict[str, Any]] = []
    files: dict[str, FileInfo] = {}
    try:
        reader = await _reader(request)
        await _read_parts(reader, store, max_file, body_limit, files, holder)
    except (ValueError, AssertionError, KeyError, HttpProcessingError):
        # A part header aiohttp cannot parse, a truncated body, a bad boundary.
        raise InputError("the multipart body is malformed", code="invalid_multipart") from None
    if not holder:
        raise InputError(
            f"a multipart request needs a part named '{c.PAYLOAD_PART}' holding the JSON body",
            code="missing_field",
            field=c.PAYLOAD_PART,
        )
    return holder[0], files


async def _reader(request: web.Request) -> MultipartReader:
    """A reader of the body as it streams in; of the bytes already read when something read
    the whole body first (the signature check of a signed client, within `body_limit`)."""
    if not request.content.is_eof() or not request.body_exists:
        return await request.multipart()
    raw = await request.read()  # aiohttp keeps what it read: this is that copy
    stream = StreamReader(request.protocol, max(2**16, len(raw)), loop=asyncio.get_running_loop())
    stream.feed_data(raw)
    stream.feed_eof()
    return MultipartReader(request.headers, stream)


async def _read_parts(
    reader: MultipartReader,
    store: MediaStore,
    max_file: int,
    body_limit: int,
    files: dict[str, FileInfo],
    holder: list[dict[str, Any]],
) -> None:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InputError("nested multipart bodies are not supported", code="invalid_multipart")
        name = part.name or ""
        if name == c.PAYLOAD_PART:
            if holder:
                raise InputError(
                    f"two parts are named {name!r}", code="invalid_multipart", field=name
                )
            holder.append(await _payload(part, body_limit))
            continue
        if not PART_NAME.match(name):
            raise InputError(
                "file parts need a name of 1-64 letters, digits, '_', '-' or '.'",
                code="invalid_multipart",
                field=name or None,
            )
        if name in files:
            raise InputError(f"two parts are named {name!r}", code="invalid_multipart", field=name)
        if len(files) >= MAX_FILE_PARTS:
            raise InputError(
                f"at most {MAX_FILE_PARTS} files per request", code="too_many_files", field=name
            )
        files[name] = await _store_part(part, name, store, max_file)


async def _payload(part: BodyPartReader, limit: int) -> dict[str, Any]:
    raw = bytearray()
    while chunk := await part.read_chunk(c.MEDIA_CHUNK_BYTES):
        raw += chunk
        if len(raw) > limit:
            raise InputError(
                f"the {c.PAYLOAD_PART} part is over {limit} bytes",
                code="body_too_large",
                field=c.PAYLOAD_PART,
                status=413,
            )
    try:
        data = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(
            f"the {c.PAYLOAD_PART} part is not valid JSON ({exc})",
            code="invalid_json",
            field=c.PAYLOAD_PART,
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"the {c.PAYLOAD_PART} part must be a JSON object",
            code="invalid_json",
            field=c.PAYLOAD_PART,
        )
    return data


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _store_part(
    part: BodyPartReader, name: str, store: MediaStore, max_file: int
) -> FileInfo:
    filename = _safe_filename(part.filename or name)
    declared = part.headers.get("Content-Type", "")
    mime = declared.split(";")[0].strip().lower()
    if not mime or mime == "application/octet-stream":
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    upload = store.begin()
    try:
        while chunk := await part.read_chunk(c.MEDIA_CHUNK_BYTES):
            if upload.size + len(chunk) > max_file:
                raise too_large(name, None, max_file, "max_upload_bytes")
            await upload.write(chunk)
    except BaseException:
        upload.abort()
        raise
    if upload.size == 0:
        upload.abort()
        raise InputError(f"the file part {name!r} is empty", code="empty_file", field=name)
    stored = await store.commit(upload)
    return FileInfo(stored.sha256, stored.size, filename, mime)


def _safe_filename(raw: str) -> str:
    """The last path component, without control characters, at most 255 characters."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:255] or "file"
