"""Copying the files of commands from one store to another (`gateway migrate-queue`: from a
single node's `[media] dir` into PostgreSQL, so the moved commands can still be sent)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.commands import Command
from gateway.media.refs import META_KEY
from gateway.media.store import MediaStore

logger = logging.getLogger(__name__)


async def copy_files(commands: Iterable[Command], source: MediaStore, target: MediaStore) -> int:
    """Copy (streaming, a chunk at a time) and link every file the commands refer to that
    `target` lacks; how many files were copied. A file missing from `source` is logged and
    left out: its command fails with `media_unavailable` when sent, as it would have before.
    Remembered file_ids are not copied (the first send uploads the bytes again)."""
    copied = 0
    for command in commands:
        for info in command.meta.get(META_KEY, {}).values():
            sha = str(info["sha256"])
            if await target.size(sha) is None:
                if await source.size(sha) is None:
                    logger.warning("command %s: its file %s is missing", command.id, sha[:12])
                    continue
                upload = target.begin()
                try:
                    async for chunk in source.chunks(sha):
                        await upload.write(chunk)
                except BaseException:
                    upload.abort()
                    raise
                stored = await target.commit(upload)
                if stored.sha256 != sha:
                    raise OSError(f"the file {sha[:12]} changed on disk (now {stored.sha256})")
                copied += 1
            await target.link(sha, command.id)
    return copied
