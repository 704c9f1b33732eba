"""Files the sandbox holds: what bots uploaded, with file_id / file_unique_id like Telegram's.

A `file_id` belongs to the bot that received it (another bot's is "wrong file identifier");
a `file_unique_id` is derived from the bytes, the same for every bot. A photo is stored once
with several sizes (Telegram's thumbnails `s` 90, `m` 320, `x` 800, `y` 1280 px on the long
side, smaller than the original, then the original capped at 2560 px): each size has its own
ids, and all of them download the original bytes (the sandbox does not resize).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import struct
from dataclasses import dataclass, field
from typing import Any

#: Telegram's photo size letters and their long side in pixels.
PHOTO_SIZES = (("s", 90), ("m", 320), ("x", 800), ("y", 1280))
MAX_PHOTO_SIDE = 2560
#: file_id prefixes by kind (Telegram's start with a type-dependent prefix too).
_PREFIX = {
    "photo": "AgAC",
    "document": "BQAC",
    "video": "BAAC",
    "audio": "CQAC",
    "voice": "AwAC",
    "animation": "CgAC",
}
_DIRECTORY = {
    "photo": "photos",
    "document": "documents",
    "video": "videos",
    "audio": "music",
    "voice": "voice",
    "animation": "animations",
}


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, GIF or WebP image; None when it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return 512, 512  # good enough: the sandbox does not decode WebP
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


@dataclass
class StoredFile:
    """One file's bytes and description."""

    unique_id: str
    kind: str
    data: bytes
    mime_type: str | None
    file_name: str | None
    width: int = 0
    height: int = 0
    file_path: str = ""

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class FileHandle:
    """A file_id: which bot owns it, which file, and which photo size it names."""

    file_id: str
    bot_id: int
    file: StoredFile
    unique_id: str
    width: int = 0
    height: int = 0
    size: int = 0


@dataclass
class SandboxFiles:
    """Every file of every bot; `uploads` counts files received as uploads."""

    handles: dict[str, FileHandle] = field(default_factory=dict)
    uploads: int = 0
    _paths: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(
        self,
        bot_id: int,
        kind: str,
        data: bytes,
        mime_type: str | None,
        file_name: str | None,
        dims: tuple[int, int] | None = None,
    ) -> list[FileHandle]:
        """Store a file for a bot; its handles (a photo's sizes, smallest first)."""
        unique = _unique(data, kind)
        width, height = dims or (0, 0)
        extension = os.path.splitext(file_name or "")[1] or (".jpg" if kind == "photo" else "")
        path = f"{_DIRECTORY.get(kind, 'documents')}/file_{next(self._paths)}{extension}"
        stored = StoredFile(unique, kind, data, mime_type, file_name, width, height, path)
        if kind != "photo":
            return [self._handle(bot_id, stored, unique, width, height, stored.size)]
        handles = []
        side = max(width, height, 1)
        for letter, limit in PHOTO_SIZES:
            if limit < side:
                scale = limit / side
                size = max(1, int(stored.size * scale * scale))
                w, h = max(1, round(width * scale)), max(1, round(height * scale))
                handles.append(self._handle(bot_id, stored, unique + letter, w, h, size))
        scale = min(1.0, MAX_PHOTO_SIDE / side)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        handles.append(self._handle(bot_id, stored, unique + "w", w, h, stored.size))
        return handles

    def _handle(
        self, bot_id: int, stored: StoredFile, unique: str, width: int, height: int, size: int
    ) -> FileHandle:
        file_id = _PREFIX.get(stored.kind, "BQAC") + base64.urlsafe_b64encode(
            os.urandom(24)
        ).decode().rstrip("=")
        handle = FileHandle(file_id, bot_id, stored, unique, width, height, size)
        self.handles[file_id] = handle
        return handle

    def find(self, bot_id: int, file_id: str) -> FileHandle | None:
        """The handle of a file_id this bot received; None for anything else."""
        handle = self.handles.get(file_id)
        return handle if handle is not None and handle.bot_id == bot_id else None

    def by_path(self, bot_id: int, path: str) -> StoredFile | None:
        """The file getFile gave `path` to (for /file/bot<token>/<path>)."""
        for handle in self.handles.values():
            if handle.bot_id == bot_id and handle.file.file_path == path:
                return handle.file
        return None

    @staticmethod
    def describe(handle: FileHandle) -> dict[str, Any]:
        """The Bot API object of the file (PhotoSize, Document, Video, ...)."""
        stored = handle.file
        body: dict[str, Any] = {"file_id": handle.file_id, "file_unique_id": handle.unique_id}
        if stored.kind in ("photo", "video", "animation") and handle.width:
            body["width"], body["height"] = handle.width, handle.height
        if stored.kind in ("video", "audio", "voice", "animation"):
            body["duration"] = 0
        if stored.kind != "photo":
            if stored.file_name:
                body["file_name"] = stored.file_name
            if stored.mime_type:
                body["mime_type"] = stored.mime_type
        body["file_size"] = handle.size
        return body


def _unique(data: bytes, kind: str) -> str:
    digest = hashlib.sha256(kind.encode() + b":" + data).digest()
    return "AQAD" + base64.urlsafe_b64encode(digest[:12]).decode().rstrip("=")
