"""Sample payloads of each inlet kind, for `gateway check` to render an inlet's template
against before a real notification does (gateway/ops/inletcheck.py)."""

from __future__ import annotations

from typing import Any, Final

from gateway.inlets import alertmanager, alerts
from gateway.inlets.config import Inlet
from gateway.inlets.templates import render

_ALERT: Final[dict[str, Any]] = {
    "status": "firing",
    "labels": {"alertname": "HighLoad", "instance": "web-1:9100", "severity": "critical"},
    "annotations": {"summary": "Load above 4 for 5 minutes", "description": "load15 is 4.2"},
    "startsAt": "2026-01-01T00:00:00Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus.example.org/graph?g0.expr=load15",
    "fingerprint": "sample-1",
}

#: Alertmanager's webhook (version 4): one alert firing, one resolved. Grafana's has the same
#: shape plus its own fields (links, `title`, `message`).
ALERTMANAGER: Final[dict[str, Any]] = {
    "version": "4",
    "groupKey": '{}:{alertname="HighLoad"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "telegram",
    "groupLabels": {"alertname": "HighLoad"},
    "commonLabels": {"alertname": "HighLoad", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example.org:9093",
    "alerts": [
        _ALERT,
        {
            **_ALERT,
            "status": "resolved",
            "labels": {**_ALERT["labels"], "instance": "web-2:9100"},
            "endsAt": "2026-01-01T00:10:00Z",
            "fingerprint": "sample-2",
        },
    ],
}
GRAFANA: Final[dict[str, Any]] = {
    **ALERTMANAGER,
    "title": "[FIRING:1] HighLoad",
    "message": "Load above 4",
    "alerts": [
        {
            **alert,
            "silenceURL": "https://grafana.example.org/alerting/silence/new",
            "dashboardURL": "https://grafana.example.org/d/abc",
            "panelURL": "https://grafana.example.org/d/abc?viewPanel=1",
            "valueString": "[ var='A' value=4.2 ]",
        }
        for alert in ALERTMANAGER["alerts"]
    ],
}

_COMMIT: Final = {
    "id": "0123456789abcdef0123456789abcdef01234567",
    "message": "Fix the load balancer\n\nDetails.",
    "url": "https://example.org/acme/api/commit/0123456",
}
#: One body with what each GitHub event's default template reads.
GITHUB: Final[dict[str, Any]] = {
    "action": "completed",
    "ref": "refs/heads/main",
    "compare": "https://github.com/acme/api/compare/a...b",
    "commits": [_COMMIT],
    "repository": {"full_name": "acme/api", "html_url": "https://github.com/acme/api"},
    "sender": {"login": "octocat"},
    "pull_request": {
        "number": 7,
        "title": "Faster",
        "html_url": "https://github.com/acme/api/pull/7",
    },
    "issue": {"number": 8, "title": "Slow", "html_url": "https://github.com/acme/api/issues/8"},
    "comment": {"body": "Looks good", "html_url": "https://github.com/acme/api/issues/8#c1"},
    "release": {"name": "v1.2", "tag_name": "v1.2", "html_url": "https://github.com/acme/api/r"},
    "workflow_run": {
        "name": "CI",
        "conclusion": "failure",
        "status": "completed",
        "head_branch": "main",
        "html_url": "https://github.com/acme/api/actions/runs/1",
    },
    "check_suite": {"conclusion": "failure", "status": "completed", "head_branch": "main"},
}
GITLAB: Final[dict[str, Any]] = {
    "ref": "refs/heads/main",
    "total_commits_count": 1,
    "commits": [_COMMIT],
    "project": {
        "path_with_namespace": "acme/api",
        "web_url": "https://gitlab.example.org/acme/api",
    },
    "user": {"username": "tanuki"},
    "user_username": "tanuki",
    "object_attributes": {
        "action": "open",
        "state": "opened",
        "iid": 3,
        "id": 42,
        "title": "Faster",
        "url": "https://gitlab.example.org/acme/api/-/merge_requests/3",
        "status": "failed",
        "ref": "main",
    },
}
GENERIC: Final[dict[str, Any]] = {"title": "Sample", "status": "down", "id": 1, "url": ""}


def rendered(inlet: Inlet, template: Any) -> list[tuple[str, str]]:
    """What `template` makes of the kind's samples: (what was rendered, the text), as the
    gateway renders a real payload (gateway/inlets/lifecycle.py and service.py). Raises what
    the template raises."""
    if inlet.kind in ("alertmanager", "grafana"):
        payload = GRAFANA if inlet.kind == "grafana" else ALERTMANAGER
        [notification] = alertmanager.parse(payload, "group", inlet.kind.capitalize())
        state = alerts.merge({}, notification)
        out = [("a firing group", render(template, alerts.context(inlet, state)))]
        resolved = alerts.merge(state, _resolved(notification))
        out.append(("a resolved group", render(template, alerts.context(inlet, resolved))))
        if inlet.batch_window_s > 0:
            entry = alerts.storm_entry(notification, state)
            storm = {"storm": {"a": entry, "b": {**entry, "title": "DiskFull"}}, "single": state}
            out.append(("a storm", render(template, alerts.context(inlet, storm))))
        return out
    if inlet.kind == "generic":
        context = {**GENERIC, "event": "generic", "payload": GENERIC, "inlet": inlet.name}
        return [("a sample body", render(template, context))]
    payload = GITHUB if inlet.kind == "github" else GITLAB
    out = []
    for event in sorted({name.partition(":")[0] for name in inlet.events}):
        context = {
            "event": event,
            "action": payload.get("action"),
            "payload": payload,
            "inlet": inlet.name,
        }
        out.append((f"a {event} event", render(template, context)))
    return out


def _resolved(notification: alertmanager.Notification) -> alertmanager.Notification:
    return alertmanager.Notification(
        notification.key,
        "resolved",
        [{**alert, "status": "resolved"} for alert in notification.alerts],
        notification.group,
    )
