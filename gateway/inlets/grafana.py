"""Grafana alerting's webhook contact point: Alertmanager's shape plus Grafana's own fields
(`title`, `message`, and per alert `silenceURL`, `dashboardURL`, `panelURL`, `valueString`),
which become link buttons under the message."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from gateway.inlets.alertmanager import Notification
from gateway.inlets.alertmanager import parse as parse_alertmanager

#: (field of an alert, button label), in the order the buttons appear.
LINKS = (("panelURL", "📈 Panel"), ("dashboardURL", "📊 Dashboard"), ("silenceURL", "🔕 Silence"))


def parse(payload: Any, group_by: str) -> list[Notification]:
    """Grafana's notifications; 400 naming what is missing, like Alertmanager's."""
    return parse_alertmanager(payload, group_by, kind="Grafana")


def link_buttons(alerts: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """URL buttons from the first alert that has links. Telegram refuses buttons to local
    addresses (Grafana's default root_url is http://localhost:3000): those are left out."""
    for alert in alerts:
        buttons = [
            {"text": label, "url": alert[name]}
            for name, label in LINKS
            if isinstance(alert.get(name), str) and _public(alert[name])
        ]
        if buttons:
            return buttons
    return []


def _public(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
