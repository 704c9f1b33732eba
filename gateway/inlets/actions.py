"""Acting on an alert from Telegram: "Silence 1h", "Silence 24h", "Ack" and "Unsilence".

A tap by an allowed user (the dispatcher's middleware checks that) creates a real silence
through Alertmanager's API v2 (`POST /api/v2/silences`: matchers from the group's labels,
`createdBy` the Telegram user, a comment naming the gateway) or expires it (`DELETE
/api/v2/silence/{id}`); the message then shows who did it, with the buttons that fit. When
Alertmanager cannot be reached the tapper is told by an alert on the tap and nothing changes.
A request that cannot have reached Alertmanager (connection refused) is retried; an expiry,
being idempotent, is retried on any network error.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
from aiogram import F, Router
from aiogram.types import CallbackQuery, User

from gateway import constants as c
from gateway.inlets import alerts
from gateway.inlets.service import Inlets
from gateway.outbox import Outbox
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)

ATTEMPTS: Final = 3
RETRY_PAUSE_SECONDS: Final = 0.3


class AlertmanagerError(Exception):
    """Alertmanager did not do it; the message says why, for the tapper."""


def who(user: User) -> str:
    return f"@{user.username}" if user.username else f"{user.first_name} ({user.id})"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class AlertActions:
    """Handles taps on alert buttons."""

    def __init__(self, inlets: Inlets, queue: Queue, outbox: Outbox) -> None:
        self._inlets = inlets
        self._queue = queue
        self._outbox = outbox
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def router(self) -> Router:
        router = Router(name="inlets")
        router.callback_query(F.data.startswith(alerts.PREFIX))(self.on_tap)
        return router

    async def on_tap(self, query: CallbackQuery) -> None:
        parsed = alerts.parse_data(query.data)
        thread = await self._queue.thread(parsed[0]) if parsed else None
        inlet = self._inlets.by_name.get(thread.inlet) if thread else None
        if parsed is None or thread is None or thread.closed or inlet is None:
            await self._answer(query, "This alert is over.")
            return
        thread_id, action = parsed
        group = alerts.group_of(thread.state)
        user = query.from_user
        try:
            if action == alerts.ACK:
                ack = {"by": who(user), "at": _when(datetime.now(UTC))}
                change: Any = lambda state: {**state, "ack": ack}  # noqa: E731
                answer = "Acknowledged."
            elif not inlet.alertmanager_url:
                await self._answer(query, "No Alertmanager is configured for this inlet.", True)
                return
            elif action == alerts.UNSILENCE:
                silence = group.get("silence")
                if silence:
                    await self._expire(inlet.alertmanager_url, silence["id"])
                change = lambda state: {**state, "silence": None}  # noqa: E731
                answer = "Silence expired."
            else:
                if group.get("silence"):
                    await self._answer(query, f"Already silenced by {group['silence']['by']}.")
                    return
                seconds = alerts.SILENCE_SECONDS[action]
                silence = await self._silence(
                    inlet.alertmanager_url, inlet.name, group, user, seconds
                )
                change = lambda state: {**state, "silence": silence}  # noqa: E731
                answer = f"Silenced until {silence['until']}."
        except AlertmanagerError as exc:
            logger.warning("inlet %s: %s", inlet.name, exc)
            await self._answer(query, str(exc), alert=True)
            return
        if await self._inlets.lifecycle.change(inlet, thread_id, change) is None:
            await self._answer(query, "This alert is over.")
            return
        logger.info("inlet %s: %s by user %d on thread %s", inlet.name, action, user.id, thread_id)
        await self._answer(query, answer)

    async def _silence(
        self, base: str, inlet: str, group: dict[str, Any], user: User, seconds: int
    ) -> dict[str, Any]:
        info = group.get("group", {})
        labels = info.get("groupLabels") or info.get("commonLabels") or {}
        if not labels:
            raise AlertmanagerError("This alert group has no labels to match a silence on.")
        now = datetime.now(UTC)
        until = now + timedelta(seconds=seconds)
        body = {
            "matchers": [
                {"name": k, "value": str(v), "isRegex": False, "isEqual": True}
                for k, v in sorted(labels.items())
            ],
            "startsAt": now.isoformat().replace("+00:00", "Z"),
            "endsAt": until.isoformat().replace("+00:00", "Z"),
            "createdBy": f"{who(user)} via Telegram",
            "comment": f"Silenced from Telegram through telegram-gateway (inlet {inlet})",
        }
        status, answer = await self._call("POST", f"{base}/api/v2/silences", body, idempotent=False)
        if status != 200 or not isinstance(answer, dict) or not answer.get("silenceID"):
            raise AlertmanagerError(f"Alertmanager refused the silence (HTTP {status}).")
        return {"id": answer["silenceID"], "by": who(user), "until": _when(until)}

    async def _expire(self, base: str, silence_id: str) -> None:
        url = f"{base}/api/v2/silence/{silence_id}"
        status, _ = await self._call("DELETE", url, None, idempotent=True)
        if status not in (200, 404):  # 404: gone already, which is what was wanted
            raise AlertmanagerError(f"Alertmanager refused to expire the silence (HTTP {status}).")

    async def _call(self, method: str, url: str, body: Any, *, idempotent: bool) -> tuple[int, Any]:
        assert self._session is not None, "AlertActions.open() first"
        timeout = aiohttp.ClientTimeout(total=c.ALERTMANAGER_TIMEOUT_SECONDS)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._session.request(
                    method, url, json=body, timeout=timeout, allow_redirects=False
                ) as resp:
                    try:
                        data = await resp.json(content_type=None)
                    except ValueError:
                        data = None
                    return resp.status, data
            except (aiohttp.ClientConnectorError, aiohttp.ClientError, TimeoutError) as exc:
                # Connection refused never reached Alertmanager: safe to repeat. A silence whose
                # answer was lost may exist, so it is not re-created.
                safe = idempotent or isinstance(exc, aiohttp.ClientConnectorError)
                if not safe or attempt == ATTEMPTS:
                    reason = (
                        "did not answer in time"
                        if isinstance(exc, TimeoutError)
                        else (f"is unreachable ({type(exc).__name__})")
                    )
                    raise AlertmanagerError(f"Alertmanager {reason}; nothing changed.") from None
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise AlertmanagerError("Alertmanager is unreachable; nothing changed.")

    async def _answer(self, query: CallbackQuery, text: str, alert: bool = False) -> None:
        await self._outbox.send(
            "answerCallbackQuery", callback_query_id=query.id, text=text, show_alert=alert
        )
