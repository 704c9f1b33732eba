"""The queue database's schema: the commands table, its indexes, and the steps between versions.

`PRAGMA user_version` holds the version a database is at; `migrate` runs the missing steps in
order, each in a transaction of its own, when the queue opens.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from pathlib import Path
from typing import Final

from gateway.errors import StartupError
from gateway.queue import threads

logger = logging.getLogger(__name__)

COMMANDS_TABLE: Final = "commands"
#: Webhook updates already handled, by (bot, update_id): what makes a re-sent update a no-op.
UPDATES_TABLE: Final = "updates"
#: Webhook updates aiogram could not validate, kept for `gateway updates list --failed`.
FAILED_UPDATES_TABLE: Final = "failed_updates"
#: Request signatures seen, per API client, until they expire (replay refusal).
SIGNATURES_TABLE: Final = "signatures"
#: The parts of a split message delivered so far: one row each, so that saving the progress of
#: a long text does not rewrite its command's row (which holds the whole text).
PARTS_TABLE: Final = "command_parts"
#: The columns, in the order every SELECT and INSERT of the queue uses.
COLUMNS: Final = (
    "id, seq, lane, method, params, status, attempts, created_at, updated_at, not_before, "
    "result, error, idempotency_key, client, meta"
)
#: The columns of schema version 2, which migration 3 copies (spelled out, not `COLUMNS`:
#: later versions may add columns that a version-2 table does not have).
COLUMNS_V2: Final = (
    "id, seq, lane, method, params, status, attempts, created_at, updated_at, not_before, "
    "result, error, idempotency_key, client, meta"
)

#: `MIGRATIONS[n]` takes a database from schema version n - 1 to n (`PRAGMA user_version`).
#: Add a step here to change the schema; `open` runs the missing ones in order.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        f"""CREATE TABLE {COMMANDS_TABLE} (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            lane TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            not_before REAL NOT NULL,
            result TEXT,
            error TEXT,
            idempotency_key TEXT
        )""",
        # The head of every lane: its oldest command that is not final.
        f"""CREATE INDEX {COMMANDS_TABLE}_lane_head ON {COMMANDS_TABLE} (lane, seq)
            WHERE status IN ('queued', 'sending')""",
        f"""CREATE INDEX {COMMANDS_TABLE}_idempotency
            ON {COMMANDS_TABLE} (idempotency_key, created_at)
            WHERE idempotency_key IS NOT NULL""",
        f"CREATE INDEX {COMMANDS_TABLE}_status ON {COMMANDS_TABLE} (status)",
    ),
    # Which API client submitted a command, and extension data of later features.
    2: (
        f"ALTER TABLE {COMMANDS_TABLE} ADD COLUMN client TEXT",
        f"ALTER TABLE {COMMANDS_TABLE} ADD COLUMN meta TEXT",
    ),
    # Fewer B-trees to write per command: `seq` becomes the rowid (new rows are appended, and
    # its separate UNIQUE index goes), and the status index covers only questions waiting for
    # an answer (queued and sent commands no longer touch it). Same columns, same order.
    3: (
        f"""CREATE TABLE {COMMANDS_TABLE}_v3 (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            lane TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            not_before REAL NOT NULL,
            result TEXT,
            error TEXT,
            idempotency_key TEXT,
            client TEXT,
            meta TEXT
        )""",
        f"""INSERT INTO {COMMANDS_TABLE}_v3 ({COLUMNS_V2})
            SELECT {COLUMNS_V2} FROM {COMMANDS_TABLE}""",
        f"DROP TABLE {COMMANDS_TABLE}",
        f"ALTER TABLE {COMMANDS_TABLE}_v3 RENAME TO {COMMANDS_TABLE}",
        f"""CREATE INDEX {COMMANDS_TABLE}_lane_head ON {COMMANDS_TABLE} (lane, seq)
            WHERE status IN ('queued', 'sending')""",
        f"""CREATE INDEX {COMMANDS_TABLE}_idempotency
            ON {COMMANDS_TABLE} (idempotency_key, created_at)
            WHERE idempotency_key IS NOT NULL""",
        f"""CREATE INDEX {COMMANDS_TABLE}_awaiting ON {COMMANDS_TABLE} (seq)
            WHERE status = 'awaiting_reply'""",
    ),
    # Split-message progress one row per part (saving part n wrote the whole text n times).
    4: (
        f"""CREATE TABLE {PARTS_TABLE} (
            command_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            result TEXT,
            saved_at REAL NOT NULL,
            PRIMARY KEY (command_id, part)
        ) WITHOUT ROWID""",
    ),
    # The replay cache: a signature is refused while it is valid, across restarts.
    5: (
        f"""CREATE TABLE {SIGNATURES_TABLE} (
            client TEXT NOT NULL,
            signature TEXT NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (client, signature)
        ) WITHOUT ROWID""",
        f"CREATE INDEX {SIGNATURES_TABLE}_expires ON {SIGNATURES_TABLE} (expires)",
    ),
    # The webhook's dedup record and its dead letters. `digest` tells a re-sent update (same
    # id, same content) from a new one that happens to reuse an id (a bot whose update ids
    # restarted, the sandbox after a restart).
    6: (
        f"""CREATE TABLE {UPDATES_TABLE} (
            bot_id INTEGER NOT NULL,
            update_id INTEGER NOT NULL,
            digest TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (bot_id, update_id)
        ) WITHOUT ROWID""",
        f"CREATE INDEX {UPDATES_TABLE}_received ON {UPDATES_TABLE} (received_at)",
        f"""CREATE TABLE {FAILED_UPDATES_TABLE} (
            seq INTEGER PRIMARY KEY,
            bot_id INTEGER NOT NULL,
            update_id INTEGER NOT NULL,
            received_at REAL NOT NULL,
            error TEXT NOT NULL,
            handled TEXT NOT NULL,
            body TEXT NOT NULL
        )""",
        f"""CREATE INDEX {FAILED_UPDATES_TABLE}_received
            ON {FAILED_UPDATES_TABLE} (received_at)""",
    ),
    # Retention: the pruner walks commands oldest first. `created_at` never changes, so this
    # index costs one append per new command and nothing when a command changes status.
    7: (f"CREATE INDEX {COMMANDS_TABLE}_created ON {COMMANDS_TABLE} (created_at)",),
    # 8 belongs to the rich-messages work: a placeholder until it is merged.
    8: (),
    # Inlets: the message each alert group (or storm) is shown in, across restarts.
    9: threads.MIGRATION,
}
SCHEMA_VERSION: Final = max(MIGRATIONS)

INSERT_WIDTH: Final = 15  # the columns
#: Rows per INSERT statement (15 parameters each; SQLite allows 32,766 since 3.32).
INSERT_CHUNK: Final = 500


@functools.lru_cache(maxsize=INSERT_CHUNK)
def insert_sql(rows: int) -> str:
    """`INSERT ... VALUES (...), (...), ...` for `rows` commands."""
    row = "(" + ", ".join("?" * INSERT_WIDTH) + ")"
    return f"INSERT INTO {COMMANDS_TABLE} ({COLUMNS}) VALUES " + ", ".join([row] * rows)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the database to `SCHEMA_VERSION`; refuse one made by a newer gateway."""
    row = db.execute("PRAGMA user_version").fetchone()
    version: int = row[0] if row else 0
    latest = max(MIGRATIONS)
    if version > latest:
        raise StartupError(
            f"the queue database {path} has schema version {version}, newer than this "
            f"gateway's {latest}"
        )
    for target in range(version + 1, latest + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        logger.info("queue database %s: schema version %d", path, target)
