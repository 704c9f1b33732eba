"""The SQLite queue's memory of what it has seen: request signatures (replays refused),
webhook updates (duplicates dropped) and the updates that failed (dead letters).

Jobs run in the queue's database thread (gateway/queue/sqlite_commit.py).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from gateway import constants as c
from gateway.queue.base import UpdateRecord
from gateway.queue.schema import FAILED_UPDATES_TABLE, SIGNATURES_TABLE, UPDATES_TABLE
from gateway.queue.sqlite_commit import Seqs, insert_rows

SEEN: Final = f"SELECT digest FROM {UPDATES_TABLE} WHERE bot_id = ? AND update_id = ?"


class Signatures:
    """Request signatures seen, swept of the expired ones at most once a second."""

    def __init__(self) -> None:
        #: When the database thread last deleted expired signatures.
        self.swept = 0.0

    def remember(
        self, db: sqlite3.Connection, client: str, signature: str, expires: float, now: float
    ) -> bool:
        """Keep a signature until it expires; False when it is kept already (a replay)."""
        if now - self.swept >= 1.0:
            db.execute(f"DELETE FROM {SIGNATURES_TABLE} WHERE expires < ?", (now,))
            self.swept = now
        # A row that expired but was not swept yet gives way to the new one.
        inserted = db.execute(
            f"""INSERT INTO {SIGNATURES_TABLE} (client, signature, expires) VALUES (?, ?, ?)
                ON CONFLICT (client, signature) DO UPDATE SET expires = excluded.expires
                WHERE {SIGNATURES_TABLE}.expires < ?""",
            (client, signature, expires, now),
        ).rowcount
        return bool(inserted)


def record_update(
    db: sqlite3.Connection,
    record: UpdateRecord,
    rows: list[tuple[Any, ...]],
    forget_before: float,
    seqs: Seqs,
) -> int | None:
    """Note an update and insert the commands it made (their first seq); None for a duplicate.

    Updates received before `forget_before` are forgotten; a failed one becomes a dead letter,
    of which the newest `FAILED_UPDATES_KEPT` stay.
    """
    seen = db.execute(SEEN, (record.bot_id, record.update_id)).fetchone()
    if seen is not None and seen["digest"] == record.digest:
        return None
    db.execute(f"DELETE FROM {UPDATES_TABLE} WHERE received_at < ?", (forget_before,))
    db.execute(
        f"INSERT OR REPLACE INTO {UPDATES_TABLE} VALUES (?, ?, ?, ?)",
        (record.bot_id, record.update_id, record.digest, record.received_at),
    )
    failure = record.failure
    if failure is not None:
        db.execute(
            f"""INSERT INTO {FAILED_UPDATES_TABLE}
                (bot_id, update_id, received_at, error, handled, body)
                VALUES (?, ?, ?, ?, ?, ?)""",
            (
                failure.bot_id,
                failure.update_id,
                failure.received_at,
                failure.error,
                failure.handled,
                failure.body,
            ),
        )
        db.execute(
            f"""DELETE FROM {FAILED_UPDATES_TABLE} WHERE seq <=
                (SELECT max(seq) FROM {FAILED_UPDATES_TABLE}) - ?""",
            (c.FAILED_UPDATES_KEPT,),
        )
    first = seqs.allot(len(rows))
    insert_rows(db, [v for n, row in enumerate(rows) for v in (row[0], first + n, *row[1:])])
    return first
