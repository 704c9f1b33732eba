"""Test files: real PNG images of any size, and a loopback HTTP server that serves files."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


def png(width: int = 64, height: int = 48, salt: int = 0, padding: int = 0) -> bytes:
    """A valid PNG (grey, one colour per `salt`), optionally padded with an extra chunk of
    `padding` bytes to reach a size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + bytes([salt % 256]) * width
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height))
    if padding:
        body += chunk(b"teXt", b"pad\x00" + b"x" * padding)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


@dataclass
class FileServer:
    """A loopback HTTP server: `files` by path; `hits` counts requests (connections made)."""

    url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: int = 0


@asynccontextmanager
async def file_server(host: str = "127.0.0.1") -> AsyncIterator[FileServer]:
    """Serve `server.files` over plain HTTP on `host` (random port)."""
    holder: list[FileServer] = []

    async def serve(request: web.Request) -> web.Response:
        server = holder[0]
        server.hits += 1
        found = server.files.get(request.path)
        if found is None:
            return web.Response(status=404)
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    holder.append(FileServer(f"http://{host}:{port}"))
    try:
        yield holder[0]
    finally:
        await runner.cleanup()
