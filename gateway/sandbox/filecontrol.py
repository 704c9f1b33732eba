"""Control API for files: what a bot received, and the bytes back for a test to compare.

- `GET /sandbox/files?bot_id=N`: `{"uploads": <files received as uploads>, "files": [...]}`
  (one entry per file, not per photo size);
- `GET /sandbox/files/{file_id or file_unique_id}?bot_id=N`: the file's bytes.
"""

from __future__ import annotations

from aiohttp import web

from gateway.sandbox.control import ControlError, choose_bot, control, sandbox_of
from gateway.sandbox.files import FileHandle

ROUTES = web.RouteTableDef()


@ROUTES.get("/sandbox/files")
@control
async def list_files(request: web.Request) -> web.Response:
    """The files of a bot, oldest first."""
    bot = choose_bot(request)
    files = sandbox_of(request).files
    seen: dict[int, dict[str, object]] = {}
    for handle in files.handles.values():
        if handle.bot_id != bot.bot_id:
            continue
        stored = handle.file
        seen[id(stored)] = {
            "kind": stored.kind,
            "file_id": handle.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            "file_name": stored.file_name,
            "mime_type": stored.mime_type,
            "file_path": stored.file_path,
        }
    return web.json_response({"uploads": files.uploads, "files": list(seen.values())})


@ROUTES.get("/sandbox/files/{file_id}")
@control
async def file_bytes(request: web.Request) -> web.Response:
    """The bytes of a file, by file_id or file_unique_id."""
    bot = choose_bot(request)
    wanted = request.match_info["file_id"]
    found: FileHandle | None = None
    for handle in sandbox_of(request).files.handles.values():
        if handle.bot_id == bot.bot_id and wanted in (handle.file_id, handle.unique_id):
            found = handle
            break
    if found is None:
        raise ControlError(404, f"bot {bot.bot_id} has no file {wanted!r}")
    stored = found.file
    return web.Response(
        body=stored.data, content_type=stored.mime_type or "application/octet-stream"
    )
