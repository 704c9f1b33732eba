"""Group commit: one SQLite transaction for every write that arrived while the last one ran.

The database thread (gateway/queue/dbthread.py) hands `transaction` each batch. New commands
go in as multi-row INSERTs numbered by the writer (`Seqs`); other writes are jobs, functions
run in the transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.queue.schema import INSERT_CHUNK, INSERT_WIDTH, insert_sql

#: A write job: runs in the database thread, inside the batch's transaction.
Job = Callable[[sqlite3.Connection], Any]


@dataclass(eq=False)
class Work:
    """A write: new command rows to insert, or a job to run in the transaction."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    job: Job | None = None


class Seqs:
    """The commands' seq numbers, allotted by the writer (one process owns the file)."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def allot(self, count: int) -> int:
        """Take `count` numbers; the first of them."""
        first = self.last + 1
        self.last += count
        return first


def insert_chunks(values: list[Any]) -> list[list[Any]]:
    """Flat INSERT values (with seq) cut into statements SQLite takes."""
    step = INSERT_CHUNK * INSERT_WIDTH
    return [values[start : start + step] for start in range(0, len(values), step)]


def insert_rows(db: sqlite3.Connection, values: list[Any]) -> None:
    """Insert flat command values (with seq), as few statements as SQLite takes."""
    for chunk in insert_chunks(values):
        db.execute(insert_sql(len(chunk) // INSERT_WIDTH), chunk)


def transaction(db: sqlite3.Connection, batch: list[Work], seqs: Seqs) -> list[Any]:
    """One transaction for the whole batch: all the new commands in one INSERT, then the other
    writes. They were all submitted concurrently, so their order among themselves is free;
    each put's commands keep theirs.

    A batch of new commands only (the common case under load) is one INSERT statement,
    which SQLite commits on its own: one call into SQLite, so the thread gives up and
    takes back Python's GIL once per batch, not once per statement.
    """
    results: list[Any] = [None] * len(batch)
    values: list[Any] = []
    jobs = False
    # Allotted before the jobs run, so a job that inserts commands (record_update) numbers
    # them after this batch's; a rolled-back batch leaves a gap, which is harmless.
    for index, work in enumerate(batch):
        if work.job is not None:
            jobs = True
            continue
        seq = results[index] = seqs.allot(len(work.rows))
        for row in work.rows:
            values += (row[0], seq, *row[1:])
            seq += 1
    inserts = insert_chunks(values)
    if len(inserts) == 1 and not jobs:
        db.execute(insert_sql(len(values) // INSERT_WIDTH), values)
    else:
        db.execute("BEGIN IMMEDIATE")
        try:
            for chunk in inserts:
                db.execute(insert_sql(len(chunk) // INSERT_WIDTH), chunk)
            for index, work in enumerate(batch):
                if work.job is not None:
                    results[index] = work.job(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return results
