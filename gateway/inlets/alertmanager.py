"""Prometheus Alertmanager's webhook payload (version 4) → notifications of alert groups.

```json
{"version": "4", "groupKey": "{}:{alertname=\\"HighLoad\\"}", "truncatedAlerts": 0,
 "status": "firing", "receiver": "telegram", "groupLabels": {"alertname": "HighLoad"},
 "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "http://am:9093",
 "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
             "startsAt": "...", "endsAt": "...", "generatorURL": "...", "fingerprint": "..."}]}
```
Grafana's webhook contact point sends the same shape with a few more fields
(gateway/inlets/grafana.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InputError

#: Fields of an alert kept in the thread (Grafana's links included).
ALERT_FIELDS = (
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
    "silenceURL",
    "dashboardURL",
    "panelURL",
    "valueString",
)
_KEPT = frozenset(ALERT_FIELDS)
GROUP_FIELDS = (
    "receiver",
    "groupKey",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "truncatedAlerts",
    "title",
    "message",
)


@dataclass
class Notification:
    """One alert group's news: its key, status, alerts, and the group's own fields."""

    key: str
    status: str
    alerts: list[dict[str, Any]]
    group: dict[str, Any] = field(default_factory=dict)


def parse(payload: Any, group_by: str, kind: str = "Alertmanager") -> list[Notification]:
    """The notifications in a payload (one per group, or per alert with group_by = "alert");
    InputError (400) naming what is missing when it is not the kind's format."""
    if not isinstance(payload, dict):
        raise _missing(kind, "a JSON object", "body")
    for name, expected in (("alerts", list), ("groupKey", str), ("status", str)):
        if not isinstance(payload.get(name), expected):
            raise _missing(kind, f"'{name}' ({expected.__name__})", name)
    alerts = [_alert(kind, index, raw) for index, raw in enumerate(payload["alerts"])]
    group = {name: payload[name] for name in GROUP_FIELDS if name in payload}
    if group_by == "alert":
        return [
            Notification(
                alert["fingerprint"],
                alert["status"],
                [alert],
                {**group, "groupLabels": alert["labels"], "commonLabels": alert["labels"]},
            )
            for alert in alerts
        ]
    return [Notification(payload["groupKey"], payload["status"], alerts, group)]


def _alert(kind: str, index: int, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _missing(kind, f"alerts[{index}] as an object", f"alerts[{index}]")
    if raw.get("status") not in ("firing", "resolved"):
        where = f"alerts[{index}].status"
        raise _missing(kind, f"{where} (firing or resolved)", where)
    if not isinstance(raw.get("labels"), dict):
        raise _missing(kind, f"alerts[{index}].labels", f"alerts[{index}].labels")
    given = raw.get("fingerprint")
    if given and isinstance(given, str) and "annotations" in raw and raw.keys() <= _KEPT:
        return raw  # the common case: nothing to leave out or add (the payload is ours)
    # Over the alert's own keys (about 7), not over every field a kind may have (11).
    alert = {name: value for name, value in raw.items() if name in _KEPT}
    if "annotations" not in alert:
        alert["annotations"] = {}
    if not isinstance(alert.get("fingerprint"), str) or not alert["fingerprint"]:
        labels = json.dumps(raw["labels"], sort_keys=True).encode()
        alert["fingerprint"] = hashlib.sha256(labels).hexdigest()[:16]
    return alert


def _missing(kind: str, what: str, field_name: str) -> InputError:
    return InputError(
        f"not an {kind} notification: {what} is missing"
        if kind[0] in "AEIOU"
        else f"not a {kind} notification: {what} is missing",
        code="invalid_payload",
        field=field_name,
    )
