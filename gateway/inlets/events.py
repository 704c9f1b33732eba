"""GitHub, GitLab and generic payloads: one message per event, rendered by the inlet's
template (or the kind's default), with the event's own id as the idempotency key so that a
re-delivery is not sent twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from multidict import CIMultiDictProxy

from gateway import constants as c
from gateway.errors import InputError
from gateway.inlets.config import Inlet
from gateway.inlets.templates import render

#: workflow_run conclusions sent by default ("workflow_run:all" in `events` sends every one).
FAILED_RUNS: Final = frozenset({"failure", "timed_out", "startup_failure", "action_required"})
#: GitLab pipeline statuses worth a message ("pipeline:all" sends every one).
FINISHED_PIPELINES: Final = frozenset({"success", "failed", "canceled"})


@dataclass(frozen=True)
class Event:
    """What to render: the event's name and template variables, and its dedup id."""

    name: str
    context: dict[str, Any]
    delivery: str | None


class Ignored(Exception):
    """Valid, authentic, and not to be sent (a ping, a filtered event): 200, nothing queued."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def github(inlet: Inlet, headers: CIMultiDictProxy[str], payload: Any) -> Event:
    event = headers.get(c.GITHUB_EVENT_HEADER)
    if not event:
        raise InputError(
            f"not a GitHub webhook: the {c.GITHUB_EVENT_HEADER} header is missing",
            code="invalid_payload",
            field=c.GITHUB_EVENT_HEADER,
        )
    if event == "ping":
        raise Ignored("ping")
    if not isinstance(payload, dict):
        raise InputError(
            "not a GitHub webhook: the body is not a JSON object",
            code="invalid_payload",
            field="body",
        )
    if event not in inlet.events and f"{event}:all" not in inlet.events:
        raise Ignored(f"event {event} is not in this inlet's events")
    action = payload.get("action")
    if event in ("workflow_run", "check_suite"):
        run = payload.get(event) or {}
        if action != "completed":
            raise Ignored(f"{event} {action}: only completed ones are sent")
        if f"{event}:all" not in inlet.events and run.get("conclusion") not in FAILED_RUNS:
            raise Ignored(f"{event} {run.get('conclusion')}: only failed ones are sent")
    context = {"event": event, "action": action, "payload": payload, "inlet": inlet.name}
    return Event(event, context, headers.get(c.GITHUB_DELIVERY_HEADER))


def gitlab(inlet: Inlet, headers: CIMultiDictProxy[str], payload: Any) -> Event:
    if not isinstance(payload, dict) or not isinstance(payload.get("object_kind"), str):
        raise InputError(
            "not a GitLab webhook: 'object_kind' is missing",
            code="invalid_payload",
            field="object_kind",
        )
    event = payload["object_kind"]
    if event not in inlet.events and f"{event}:all" not in inlet.events:
        raise Ignored(f"event {event} is not in this inlet's events")
    if event == "pipeline" and "pipeline:all" not in inlet.events:
        status = (payload.get("object_attributes") or {}).get("status")
        if status not in FINISHED_PIPELINES:
            raise Ignored(f"pipeline {status}: only finished ones are sent")
    context = {"event": event, "action": None, "payload": payload, "inlet": inlet.name}
    return Event(event, context, headers.get(c.GITLAB_UUID_HEADER))


def generic(inlet: Inlet, headers: CIMultiDictProxy[str], payload: Any) -> Event:
    context = {"event": "generic", "payload": payload, "inlet": inlet.name}
    if isinstance(payload, dict):
        # The body's top-level fields are variables too ({{ title }} as well as
        # {{ payload.title }}); the gateway's own names win.
        context = {**{k: v for k, v in payload.items() if k.isidentifier()}, **context}
    key = None
    if inlet.dedup_key is not None:
        try:
            key = render(inlet.dedup_key, context) or None
        except Exception as exc:
            raise InputError(
                f"dedup_key could not be computed from this body: {exc}",
                code="invalid_payload",
                field="dedup_key",
            ) from None
    return Event("generic", context, key)


PARSERS: Final = {"github": github, "gitlab": gitlab, "generic": generic}
