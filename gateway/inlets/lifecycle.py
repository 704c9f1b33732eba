"""The alert's life in one message: notifications update a thread (gateway/queue/threads.py),
which is rendered and shown by a `showThread` command in the chat's lane.

Every change is a read-modify-write of the thread, saved with the commands it needs in one
transaction and retried on a version conflict (another request, or another replica, changed the
thread first). Within the process a lock per thread key avoids most of those conflicts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final

from gateway import constants as c
from gateway.commands import Command
from gateway.delivery import Worker
from gateway.inlets import alerts
from gateway.inlets.alertmanager import Notification
from gateway.inlets.config import ChatTarget, Inlet
from gateway.inlets.templates import DEFAULTS, render
from gateway.queue.base import Queue
from gateway.queue.threads import THREAD_METHOD, Thread

logger = logging.getLogger(__name__)

#: Read-modify-write attempts before a notification gives up (each conflict means progress).
MAX_CONFLICTS: Final = 50
STORM_KEY: Final = "storm"
#: Open threads kept in memory (saves a read per notification).
THREAD_CACHE_SIZE: Final = 10_000

Change = Callable[[dict[str, Any]], dict[str, Any]]


class Lifecycle:
    """Keeps each alert group's message up to date."""

    def __init__(
        self,
        queue: Queue,
        worker: Worker,
        on_template_error: Callable[[Inlet], None],
        on_accepted: Callable[[str, Sequence[Command]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._worker = worker
        self._on_template_error = on_template_error
        self._on_accepted = on_accepted
        self._clock = clock
        self._locks: dict[tuple[str, str, str], tuple[asyncio.Lock, list[int]]] = {}
        #: The open threads this process saved last, by (inlet, chat, key): a stale one (another
        #: replica changed it) only costs a version conflict and a fresh read.
        self._cache: OrderedDict[tuple[str, str, str], Thread] = OrderedDict()

    async def notify(
        self, inlet: Inlet, target: ChatTarget, notification: Notification, quiet: bool
    ) -> str:
        """Apply one group's notification to its message in `target`; the thread's id."""
        storm = inlet.batch_window_s > 0
        key = STORM_KEY if storm else notification.key
        where = (inlet.name, target.key, key)
        change = _storm_change(notification) if storm else _group_change(notification)
        async with self._exclusive(where):
            for _ in range(MAX_CONFLICTS):
                now = self._clock()
                thread = self._cache.pop(where, None)
                if thread is None:
                    thread = await self._queue.open_thread(*where)
                if storm and thread is not None and now - thread.created_at >= inlet.batch_window_s:
                    thread.closed, thread.updated_at = True, now
                    if await self._queue.save_thread(thread, thread.version, []) is None:
                        continue
                    thread = None
                if thread is None:
                    thread = Thread(inlet.name, target.key, key, created_at=now)
                if await self._save(target, thread, change, quiet, now):
                    if not thread.closed:
                        self._remember(where, thread)
                    return thread.id
        raise RuntimeError(f"inlet {inlet.name}: thread {key!r} kept changing under us")

    async def change(self, inlet: Inlet, thread_id: str, change: Change) -> Thread | None:
        """Apply `change` to a thread's group state (a tap's silence or ack); None when the
        thread is gone or closed."""

        def on_group(state: dict[str, Any]) -> dict[str, Any]:
            if isinstance(state.get("single"), dict):
                return {**state, "single": change(state["single"])}
            return change(state)

        for _ in range(MAX_CONFLICTS):
            thread = await self._queue.thread(thread_id)
            if thread is None or thread.closed:
                return None
            self._cache.pop((thread.inlet, thread.chat, thread.key), None)
            if await self._save(_target(thread.chat), thread, on_group, False, self._clock()):
                return thread
        return None

    def render(self, inlet: Inlet, thread: Thread) -> tuple[str, str | None, dict[str, Any] | None]:
        """The message of a thread: text, parse mode and buttons (in the worker, when it is
        about to be sent: once per message sent, not once per notification)."""
        state = thread.state
        markup = alerts.markup(inlet, thread.id, state)
        template = inlet.template or DEFAULTS[inlet.kind]
        try:
            text = render(template, alerts.context(inlet, state))
        except Exception as exc:  # any template bug: fall back, never lose the alert
            logger.warning("inlet %s: template failed (%s); sent as plain text", inlet.name, exc)
            self._on_template_error(inlet)
            return alerts.fallback(inlet, state), None, markup
        if not text or len(text) > c.MAX_MESSAGE_LENGTH:
            return alerts.fallback(inlet, state), None, markup
        return text, inlet.parse_mode, markup

    async def _save(
        self, target: ChatTarget, thread: Thread, change: Change, quiet: bool, now: float
    ) -> bool:
        expected = thread.version
        state = change(thread.state)
        if expected and state == thread.state:
            return True  # a repeat (Alertmanager's repeat_interval, a retry): stored already
        thread.state, thread.updated_at = state, now
        thread.version += 1
        commands = [_show(target, thread.id, quiet and not expected)]
        group = alerts.group_of(state)
        if "storm" not in state and group.get("status") == "resolved":
            thread.closed = True
            if expected:  # the chat saw it firing: say it is over
                reply = f"✅ Resolved: {alerts.title(group)}"
                commands.append(_show(target, thread.id, quiet, reply=reply))
        stored = await self._queue.save_thread(thread, expected, commands)
        if stored is None:
            return False
        if stored:
            self._on_accepted(thread.inlet, stored)
            self._worker.notify({command.lane for command in stored})
        return True

    def _remember(self, where: tuple[str, str, str], thread: Thread) -> None:
        self._cache[where] = thread
        while len(self._cache) > THREAD_CACHE_SIZE:
            self._cache.popitem(last=False)

    def _exclusive(self, key: tuple[str, str, str]) -> _Exclusive:
        return _Exclusive(self._locks, key)


class _Exclusive:
    """`async with`: one holder per thread key at a time in this process; the key's lock is
    dropped with its last user. A class, not a generator context manager: it is entered on
    every notification."""

    __slots__ = ("_entry", "_key", "_locks")

    def __init__(
        self, locks: dict[tuple[str, str, str], tuple[asyncio.Lock, list[int]]], key: Any
    ) -> None:
        self._locks = locks
        self._key = key
        entry = locks.get(key)
        if entry is None:
            entry = locks[key] = (asyncio.Lock(), [0])
        self._entry = entry

    async def __aenter__(self) -> None:
        lock, users = self._entry
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        users = self._entry[1]
        users[0] -= 1
        if not users[0]:
            del self._locks[self._key]


def _group_change(notification: Notification) -> Change:
    return lambda state: alerts.merge(state, notification)


def _storm_change(notification: Notification) -> Change:
    def change(state: dict[str, Any]) -> dict[str, Any]:
        entries = dict(state.get("storm", {}))
        single_key = state.get("single_key", notification.key)
        single = state.get("single") or {}
        if notification.key == single_key:
            single = alerts.merge(single, notification)
        group = single if notification.key == single_key else alerts.merge({}, notification)
        entries[notification.key] = alerts.storm_entry(notification, group)
        return {"storm": entries, "single": single, "single_key": single_key}

    return change


def _show(target: ChatTarget, thread_id: str, quiet: bool, reply: str | None = None) -> Command:
    meta: dict[str, Any] = {"thread": thread_id}
    if quiet:
        meta["quiet"] = True
    if target.topic is not None:
        meta["topic"] = target.topic
    if reply is not None:
        meta["reply"] = reply
    return Command(method=THREAD_METHOD, params={"chat_id": target.chat_id}, meta=meta)


def _target(chat: str) -> ChatTarget:
    chat_id, _, topic = chat.partition(":")
    try:
        return ChatTarget(int(chat_id), int(topic) if topic else None)
    except ValueError:
        return ChatTarget(chat_id, int(topic) if topic else None)
