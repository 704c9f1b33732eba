"""Dead letters: webhook updates aiogram could not validate, as the queue database keeps them.

The gateway writes them (`SqliteQueue.record_update`); `gateway updates list --failed` reads
them here through a read-only connection of its own, while the gateway may be running: no
write, no lock beyond SQLite's own read snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError
from gateway.queue.base import FailedUpdate
from gateway.queue.schema import FAILED_UPDATES_TABLE

#: The newest dead letters first; one parameter, the limit.
NEWEST_FAILED: Final = f"""SELECT bot_id, update_id, received_at, error, handled, body
    FROM {FAILED_UPDATES_TABLE} ORDER BY seq DESC LIMIT ?"""


def dead_letters(rows: Sequence[sqlite3.Row]) -> list[FailedUpdate]:
    """Dead letters from rows of `NEWEST_FAILED`."""
    return [
        FailedUpdate(
            bot_id=row["bot_id"],
            update_id=row["update_id"],
            received_at=row["received_at"],
            error=row["error"],
            handled=row["handled"],
            body=row["body"],
        )
        for row in rows
    ]


def read_failed_updates(path: Path, limit: int) -> list[FailedUpdate]:
    """The newest dead letters in the database at `path`, opened read-only.

    A database the gateway never opened with dead-letter support (no table yet) has none.
    """
    if not path.is_file():
        raise ConfigError(f"no queue database at {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the queue database {path}: {exc}") from None
    try:
        db.row_factory = sqlite3.Row
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (FAILED_UPDATES_TABLE,),
        ).fetchone()
        if found is None:
            return []
        return dead_letters(db.execute(NEWEST_FAILED, (limit,)).fetchall())
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read the queue database {path}: {exc}") from None
    finally:
        db.close()
