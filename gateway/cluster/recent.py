"""A new leader keeps to the flood limits its predecessor was counting.

Flood control lives in the leader's memory. The one-second windows (per bot, per chat) are
covered by the pause before a new leader's first send (`LEADER_TAKEOVER_PAUSE_SECONDS`), but a
group's 20 messages a minute are not: without this, a new leader could send a group 20 more
within the minute its predecessor sent 20, and Telegram would answer 429. So before its first
send the new leader reads the sends of the last minute from the database
(gateway/queue/pg_recent.py) and counts them in its own windows, as if it had made them.

Times in the database are wall-clock times written by the replica that sent, so replicas on
different machines need synchronised clocks (NTP); an error of a few hundred milliseconds is
inside the windows' margin for the minute windows that matter here.
"""

from __future__ import annotations

import time

from gateway.flood import FloodController
from gateway.queue.postgres import PostgresQueue


async def recall_recent_sends(
    queue: PostgresQueue, flood: FloodController, now: float | None = None
) -> int:
    """Count the sends of the last window (any replica's) in `flood`; how many messages."""
    now = time.time() if now is None else now
    limits = flood.limits
    lookback = max(limits.chat_window[1], limits.group_window[1]) + limits.margin_seconds
    sends = await queue.recent_sends(now - lookback)
    if not sends:
        return 0
    migrated = await queue.migrated_chats()
    ages: dict[str, list[float]] = {}
    for send in sends:
        if send.lane:
            ages.setdefault(send.lane, []).extend([max(0.0, now - send.at)] * send.messages)
    for lane, chat_ages in ages.items():
        flood.recall(migrated.get(lane, lane), chat_ages)
    return sum(len(chat_ages) for chat_ages in ages.values())
