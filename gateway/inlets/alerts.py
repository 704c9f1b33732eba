"""An alert group's state as its message shows it: merging notifications, the template
context, the plain fallback and the buttons.

A group's state (kept in its thread) is `{"alerts": {fingerprint: alert}, "group": {...},
"status": "firing"|"resolved", "silence": {...}|None, "ack": {...}|None}`. Alerts that resolve
stay listed (struck through) until the whole group resolves. A storm thread (batch_window_s)
keeps `{"storm": {key: entry}, "single": <the first group's state>}`: with one entry it shows
like a group, with more it lists them.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.inlets import grafana
from gateway.inlets.alertmanager import Notification
from gateway.inlets.config import Inlet
from gateway.inlets.templates import other_labels, plain

#: Button callback data: `al:<thread id>:<action>`.
PREFIX: Final = "al:"
SILENCE_1H, SILENCE_24H, ACK, UNSILENCE = "s1", "s24", "ack", "un"
SILENCE_SECONDS: Final = {SILENCE_1H: 3600, SILENCE_24H: 86400}
#: Alerts kept per group: the oldest resolved ones go first beyond this.
MAX_ALERTS_KEPT: Final = 200


def merge(state: dict[str, Any], notification: Notification) -> dict[str, Any]:
    """The group's state after `notification`."""
    alerts: dict[str, Any] = dict(state.get("alerts", {}))
    for alert in notification.alerts:
        fingerprint = alert["fingerprint"]
        kept = alerts.pop(fingerprint, None)  # re-inserted: newest last
        # An unchanged alert stays the stored object: comparing the new state with the stored
        # one (is it a repeat?) is then an identity check for it.
        alerts[fingerprint] = kept if kept is not None and kept == alert else alert
    while len(alerts) > MAX_ALERTS_KEPT:
        oldest = next((k for k, a in alerts.items() if a["status"] == "resolved"), None)
        alerts.pop(oldest if oldest is not None else next(iter(alerts)))
    firing = any(a["status"] == "firing" for a in alerts.values())
    status = "resolved" if notification.status == "resolved" or not firing else "firing"
    if status == "resolved":  # Alertmanager says the whole group is over
        for fingerprint, alert in alerts.items():
            if alert["status"] != "resolved":
                alerts[fingerprint] = {**alert, "status": "resolved"}
    return {
        **state,
        "alerts": alerts,
        "group": state["group"] if state.get("group") == notification.group else notification.group,
        "status": status,
    }


def title(state: dict[str, Any]) -> str:
    """What the group is about: its group labels' values, else the first alert's name."""
    group = state.get("group", {})
    labels = group.get("groupLabels") or {}
    if isinstance(labels, dict) and labels:
        return " / ".join(str(v) for _, v in sorted(labels.items()))
    for alert in state.get("alerts", {}).values():
        return str(alert.get("labels", {}).get("alertname", "alert"))
    return "alert"


def context(inlet: Inlet, state: dict[str, Any]) -> dict[str, Any]:
    """The template variables of a group (see README, "Inlets")."""
    if "storm" in state and len(state["storm"]) > 1:
        entries = list(state["storm"].values())
        return {
            "inlet": inlet.name,
            "storm": True,
            "entries": entries,
            "firing_total": sum(1 for e in entries if e["status"] == "firing"),
            "resolved_total": sum(1 for e in entries if e["status"] != "firing"),
            "max_listed": inlet.max_listed,
        }
    group_state = group_of(state)
    group = group_state.get("group", {})
    own = group.get("groupLabels") or {}
    # `others`: the labels that tell an alert from the rest of its group (not alertname).
    alerts = [
        {**alert, "others": other_labels(alert.get("labels"), own)}
        for alert in group_state.get("alerts", {}).values()
    ]
    return {
        **{name: group.get(name) or {} for name in ("groupLabels", "commonLabels")},
        "commonAnnotations": group.get("commonAnnotations") or {},
        "externalURL": group.get("externalURL", ""),
        "receiver": group.get("receiver", ""),
        "groupKey": group.get("groupKey", ""),
        "message": group.get("message", "") if inlet.kind == "grafana" else "",
        "inlet": inlet.name,
        "storm": False,
        "status": group_state.get("status", "firing"),
        "title": title(group_state),
        "alerts": alerts,
        "firing": [a for a in alerts if a["status"] == "firing"],
        "resolved": [a for a in alerts if a["status"] != "firing"],
        "silence": group_state.get("silence"),
        "ack": group_state.get("ack"),
        "max_listed": inlet.max_listed,
    }


def group_of(state: dict[str, Any]) -> dict[str, Any]:
    """The group state a message shows (a storm of one shows its only group)."""
    single = state.get("single")
    return single if isinstance(single, dict) else state


def fallback(inlet: Inlet, state: dict[str, Any]) -> str:
    """Plain text when the template failed: an alert is never lost to a template."""
    variables = context(inlet, state)
    if variables["storm"]:
        lines = [f"- {e['status']}: {e['title']} ({e['count']})" for e in variables["entries"]]
        return plain(f"{len(lines)} notifications from {inlet.name}", lines)
    lines = [
        f"- {a['status']}: {a['labels'].get('alertname', '?')} "
        f"{a.get('annotations', {}).get('summary', '')}".rstrip()
        for a in variables["alerts"]
    ]
    if variables["silence"]:
        lines.append(
            f"Silenced by {variables['silence']['by']} until {variables['silence']['until']}"
        )
    if variables["ack"]:
        lines.append(f"Acknowledged by {variables['ack']['by']}")
    return plain(f"{variables['status'].upper()}: {variables['title']}", lines)


def markup(inlet: Inlet, thread_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """Buttons under the message: silence / ack / unsilence, Grafana's links."""
    if "storm" in state and len(state["storm"]) > 1:
        return None
    group_state = group_of(state)
    if group_state.get("status") != "firing":
        return None
    rows: list[list[dict[str, str]]] = []
    if inlet.alertmanager_url:
        if group_state.get("silence"):
            rows.append([_button("🔔 Unsilence", thread_id, UNSILENCE)])
        else:
            row = [
                _button("🔕 Silence 1h", thread_id, SILENCE_1H),
                _button("🔕 Silence 24h", thread_id, SILENCE_24H),
            ]
            if not group_state.get("ack"):
                row.append(_button("👀 Ack", thread_id, ACK))
            rows.append(row)
    if inlet.kind == "grafana":
        links = grafana.link_buttons(group_state.get("alerts", {}).values())
        if links:
            rows.append(links)
    return {"inline_keyboard": rows} if rows else None


def _button(text: str, thread_id: str, action: str) -> dict[str, str]:
    return {"text": text, "callback_data": f"{PREFIX}{thread_id}:{action}"}


def parse_data(data: str | None) -> tuple[str, str] | None:
    """`al:<thread id>:<action>` → (thread id, action)."""
    if not data or not data.startswith(PREFIX):
        return None
    thread_id, _, action = data[len(PREFIX) :].rpartition(":")
    if not thread_id or action not in (SILENCE_1H, SILENCE_24H, ACK, UNSILENCE):
        return None
    return thread_id, action


def storm_entry(notification: Notification, state: dict[str, Any]) -> dict[str, Any]:
    """One line of a storm message."""
    firing = sum(1 for a in state.get("alerts", {}).values() if a["status"] == "firing")
    return {
        "title": title(state),
        "status": state.get("status", notification.status),
        "count": firing or len(notification.alerts),
    }
