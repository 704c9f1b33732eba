"""The SQLite queue stays bounded: old final commands pruned, their pages given back.

See gateway/retention.py for when and how much; the job runs in the queue's database thread.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from gateway import constants as c
from gateway.queue import files
from gateway.queue.schema import COMMANDS_TABLE, PARTS_TABLE

# Oldest first along the created_at index: a command accepted at or after `before` was not
# updated before it. Keyed commands stay until their idempotency window has passed.
_PRUNE: Final = f"""DELETE FROM {COMMANDS_TABLE} WHERE seq IN (
    SELECT seq FROM {COMMANDS_TABLE}
    WHERE created_at < :before AND updated_at < :before
        AND status IN ('sent', 'failed', 'answered', 'expired')
        AND (idempotency_key IS NULL OR created_at < :keyed_before)
    ORDER BY created_at LIMIT :limit)
    RETURNING id"""


def prune(db: sqlite3.Connection, before: float, keyed_before: float, limit: int) -> int:
    """Delete up to `limit` final commands older than `before` (keyed ones older than
    `keyed_before`) with their parts; how many went."""
    values = {"before": before, "keyed_before": keyed_before, "limit": limit}
    ids = db.execute(_PRUNE, values).fetchall()
    if ids:
        db.executemany(f"DELETE FROM {PARTS_TABLE} WHERE command_id = ?", ids)
        files.give_back_free_pages(db, c.VACUUM_PAGES)
    return len(ids)
