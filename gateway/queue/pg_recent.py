"""The sends of the last minute, as a new leader reads them (gateway/cluster/recent.py).

Telegram counts a group's 20 messages a minute wherever they came from; a replica that takes
over must know what its predecessor sent lately. The commands table already holds it: a
command's `updated_at` is when its answer was recorded (after it reached Telegram, so never
earlier than Telegram counted it), and a result that is a list (an album, a split text) is
that many messages. Parts of a split text still in progress are in the parts table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.queue.pg_rows import Conn
from gateway.queue.schema import COMMANDS_TABLE, PARTS_TABLE

#: The statuses of commands that went to Telegram (`sending`: perhaps, at the takeover).
_SENT = "status IN ('sending', 'sent', 'awaiting_reply', 'answered')"

#: PostgreSQL schema step 3 (pg_schema.MIGRATIONS[3]): the recent sends, by time, cheaply.
MIGRATION: Final = (
    f"""CREATE INDEX {COMMANDS_TABLE}_recent_sends ON {COMMANDS_TABLE} (updated_at)
        WHERE {_SENT}""",
)

_RECENT = f"""
    SELECT lane, updated_at AS at,
        CASE WHEN result LIKE '[%' THEN greatest(json_array_length(result::json), 1)
             ELSE 1 END AS messages
    FROM {COMMANDS_TABLE} WHERE {_SENT} AND updated_at > $1
    UNION ALL
    SELECT c.lane, p.saved_at, 1 FROM {PARTS_TABLE} p JOIN {COMMANDS_TABLE} c
        ON c.id = p.command_id
    WHERE p.saved_at > $1 AND c.status IN ('queued', 'sending')
    ORDER BY at"""


@dataclass(frozen=True)
class RecentSend:
    """`messages` sent to the chat of `lane` at `at` (Unix time), or before."""

    lane: str
    at: float
    messages: int


async def recent_sends(conn: Conn, since: float) -> list[RecentSend]:
    """What went to Telegram after `since` (Unix time), oldest first."""
    rows = await conn.fetch(_RECENT, since)
    return [RecentSend(row["lane"], row["at"], row["messages"]) for row in rows]
