"""Where an inlet's payload becomes commands: alert kinds through their groups' messages
(gateway/inlets/lifecycle.py), the others one message per event. Everything is committed
before the caller answers 2xx."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry, Counter

from gateway.commands import Command
from gateway.delivery import Worker
from gateway.inlets import alertmanager, events, grafana
from gateway.inlets.config import Inlet
from gateway.inlets.lifecycle import Lifecycle
from gateway.inlets.templates import DEFAULTS, plain_json, render
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.queue.base import Queue

logger = logging.getLogger(__name__)


class InletMetrics:
    """The inlets' counters, in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.template_errors = Counter(
            "gateway_inlet_template_errors",
            "Inlet templates that failed at run time (the plain fallback was sent)",
            ["inlet"],
            registry=registry,
        )
        self.notifications = Counter(
            "gateway_inlet_requests",
            "Requests to inlets, by outcome (accepted, ignored, unauthorized, invalid)",
            ["inlet", "outcome"],
            registry=registry,
        )
        self._outcomes: dict[tuple[str, str], Counter] = {}

    def outcome(self, inlet: str, outcome: str) -> None:
        """Count one request; labels() takes a lock and a lookup: once per label set."""
        child = self._outcomes.get((inlet, outcome))
        if child is None:
            child = self._outcomes[inlet, outcome] = self.notifications.labels(inlet, outcome)
        child.inc()


class Inlets:
    """The configured inlets and what they do with a payload."""

    def __init__(
        self,
        inlets: Sequence[Inlet],
        queue: Queue,
        outbox: Outbox,
        worker: Worker,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.by_name = {inlet.name: inlet for inlet in inlets}
        self.metrics = InletMetrics(metrics.registry)
        self._gateway_metrics = metrics
        self._outbox = outbox
        self._clock = clock
        self.lifecycle = Lifecycle(queue, worker, self._template_failed, self.accepted, clock)

    def accepted(self, inlet: str, commands: Sequence[Command]) -> None:
        """Count commands an inlet stored in `gateway_commands_accepted_total`."""
        self._gateway_metrics.accepted_commands(commands, f"inlet:{inlet}")

    def _template_failed(self, inlet: Inlet) -> None:
        self.metrics.template_errors.labels(inlet.name).inc()

    async def accept(
        self, inlet: Inlet, headers: CIMultiDictProxy[str], payload: Any
    ) -> dict[str, Any]:
        """Store what `payload` means for the chats; the answer's body. Raises InputError
        (400) for a payload that is not the kind's, `events.Ignored` for one not to send."""
        quiet = inlet.quiet_hours is not None and inlet.quiet_hours.active(self._clock())
        if inlet.kind in ("alertmanager", "grafana"):
            parse = grafana.parse if inlet.kind == "grafana" else alertmanager.parse
            notifications = parse(payload, inlet.group_by)
            threads = [
                await self.lifecycle.notify(inlet, target, notification, quiet)
                for notification in notifications
                for target in inlet.chats
            ]
            return {"status": "accepted", "groups": len(notifications), "threads": threads}
        event = events.PARSERS[inlet.kind](inlet, headers, payload)
        text, mode = self._render(inlet, event)
        commands = [_message(target_params, text, mode, quiet) for target_params in _targets(inlet)]
        key = f"inlet:{inlet.name}:{event.delivery}" if event.delivery else None
        stored, original = await self._outbox.submit_once(commands, key)
        if original is not None:
            return {"status": "duplicate", "id": original.id}
        self.accepted(inlet.name, stored)
        return {"status": "accepted", "event": event.name, "ids": [cmd.id for cmd in stored]}

    def _render(self, inlet: Inlet, event: events.Event) -> tuple[str, str | None]:
        template = inlet.template or DEFAULTS[inlet.kind]
        try:
            text = render(template, event.context)
        except Exception as exc:  # any template bug: fall back, never lose the event
            logger.warning("inlet %s: template failed (%s); sent as plain text", inlet.name, exc)
            self._template_failed(inlet)
            return plain_json(f"{inlet.name}: {event.name}", event.context["payload"]), None
        if not text:
            return plain_json(f"{inlet.name}: {event.name}", event.context["payload"]), None
        return text, inlet.parse_mode


def _targets(inlet: Inlet) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for target in inlet.chats:
        params: dict[str, Any] = {"chat_id": target.chat_id}
        if target.topic is not None:
            params["message_thread_id"] = target.topic
        out.append(params)
    return out


def _message(params: dict[str, Any], text: str, mode: str | None, quiet: bool) -> Command:
    full = {**params, "text": text}
    if mode:
        full["parse_mode"] = mode
    if quiet:
        full["disable_notification"] = True
    return Command(method="sendMessage", params=full)
