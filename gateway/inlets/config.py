"""`[[inlets]]`: webhooks of other tools (Alertmanager, Grafana, GitHub, GitLab, any JSON)
turned into Telegram messages.

```toml
[[inlets]]
name = "prod-alerts"             # POST /inlets/prod-alerts
kind = "alertmanager"            # alertmanager | grafana | github | gitlab | generic
chats = [-1001234567890]         # where messages go (each may carry a topic: "-100123:42")
secret_file = "config/secrets/prod-alerts.key"   # generated when missing
template = "templates/alert.html.j2"             # optional: each kind has a good default
parse_mode = "HTML"
alertmanager_url = "http://alertmanager:9093"    # enables the silence buttons
quiet_hours = "22:00-07:00 Europe/Berlin"        # sent with disable_notification then
batch_window_s = 0               # > 0: notifications within the window share one message
group_by = "group"               # "alert": one message per alert instead of per group
events = ["push", "pull_request"]                # github / gitlab: which events to send
dedup_key = "{{ id }}"           # generic: repeats of the same key within 24 h are ignored
max_listed = 10                  # alerts (or storm entries) listed before "and N more"
```
Every mistake stops start-up with one line naming the inlet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway import constants as c
from gateway.errors import ConfigError
from gateway.secretfiles import Secret, read_or_create_secret

if TYPE_CHECKING:  # jinja2 loads only for a config with a template: `gateway token` needs none
    from jinja2 import Template

Kind = Literal["alertmanager", "grafana", "github", "gitlab", "generic"]
KINDS: Final = get_args(Kind)
GroupBy = Literal["group", "alert"]
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELDS: Final = frozenset(
    {
        "name",
        "kind",
        "chats",
        "secret_file",
        "template",
        "parse_mode",
        "alertmanager_url",
        "quiet_hours",
        "batch_window_s",
        "group_by",
        "events",
        "dedup_key",
        "max_listed",
    }
)
#: Events sent when an inlet names none.
DEFAULT_EVENTS: Final[dict[str, frozenset[str]]] = {
    "github": frozenset(
        {
            "push",
            "pull_request",
            "issues",
            "issue_comment",
            "release",
            "workflow_run",
            "check_suite",
        }
    ),
    "gitlab": frozenset({"push", "merge_request", "pipeline"}),
}
QUIET_RE: Final = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})(?:\s+(\S+))?$")


@dataclass(frozen=True)
class ChatTarget:
    """A chat, and the forum topic in it when there is one."""

    chat_id: int | str
    topic: int | None = None

    @property
    def key(self) -> str:
        return f"{self.chat_id}:{self.topic}" if self.topic is not None else str(self.chat_id)


@dataclass(frozen=True)
class QuietHours:
    """A daily window (it may cross midnight) in a time zone."""

    start: clock_time
    end: clock_time
    zone: ZoneInfo

    def active(self, at: float) -> bool:
        now = datetime.fromtimestamp(at, self.zone).time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


@dataclass(frozen=True)
class Inlet:
    """One configured inlet."""

    name: str
    kind: Kind
    chats: tuple[ChatTarget, ...]
    secret: Secret
    #: The operator's template; None: the kind's default.
    template: Template | None = field(default=None, compare=False)
    parse_mode: str | None = "HTML"
    alertmanager_url: str | None = None
    quiet_hours: QuietHours | None = None
    batch_window_s: float = 0.0
    group_by: GroupBy = "group"
    events: frozenset[str] = frozenset()
    dedup_key: Template | None = field(default=None, compare=False)
    max_listed: int = 10
    #: Where the secret was read from (for `gateway check`).
    secret_file: Path | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return f"{c.INLETS_PATH}/{self.name}"


def parse_inlets(
    raw: Any, base: Path, source: str, permissions: str = "refuse"
) -> tuple[Inlet, ...]:
    """The `[[inlets]]` array of tables: secrets read (or generated), templates compiled."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'inlets' must be an array of tables ([[inlets]])")
    inlets: list[Inlet] = []
    for number, entry in enumerate(raw, start=1):
        where = f"{source}: [[inlets]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{where}: name must be 1-64 of A-Z a-z 0-9 _ . - (it is the URL)")
        where = f"{source}: inlet {name!r}"
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
        if any(inlet.name == name for inlet in inlets):
            raise ConfigError(f"{where}: two inlets with this name")
        inlets.append(_inlet(entry, name, base, where, permissions))
    return tuple(inlets)


def _inlet(entry: dict[str, Any], name: str, base: Path, where: str, permissions: str) -> Inlet:
    kind = entry.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    chats = entry.get("chats")
    if not isinstance(chats, list) or not chats:
        raise ConfigError(f"{where}: chats must be a non-empty list of chat ids")
    targets = tuple(_chat(value, where) for value in chats)
    secret_name = entry.get("secret_file", f"config/secrets/inlet_{name}.key")
    if not isinstance(secret_name, str) or not secret_name:
        raise ConfigError(f"{where}: secret_file must be a path")
    secret_path = Path(secret_name) if Path(secret_name).is_absolute() else base / secret_name
    secret = read_or_create_secret(secret_path, secret_name, f"secret of inlet {name}", permissions)
    if len(secret) < 16:
        raise ConfigError(f"{where}: the secret in {secret_name} must be at least 16 characters")
    parse_mode = entry.get("parse_mode", "HTML")
    if parse_mode == "":
        parse_mode = None
    if parse_mode is not None and parse_mode not in c.PARSE_MODES:
        raise ConfigError(f"{where}: parse_mode must be one of {', '.join(c.PARSE_MODES)} or ''")
    template = None
    template_name = entry.get("template")
    if template_name is not None:
        if not isinstance(template_name, str) or not template_name:
            raise ConfigError(f"{where}: template must be a path")
        path = Path(template_name) if Path(template_name).is_absolute() else base / template_name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{where}: cannot read template {template_name} ({reason})") from None
        from jinja2 import TemplateError

        from gateway.inlets.templates import compile_template

        try:
            template = compile_template(text, html=parse_mode == "HTML")
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            at = f" line {line}" if line else ""
            raise ConfigError(f"{where}: template {template_name}{at}: {exc}") from None
    elif parse_mode != "HTML":
        raise ConfigError(
            f"{where}: the default templates are HTML; another parse_mode needs a template"
        )
    url = entry.get("alertmanager_url")
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{where}: alertmanager_url must be an http(s) URL")
        if kind != "alertmanager":
            raise ConfigError(f'{where}: alertmanager_url is for kind = "alertmanager"')
        url = url.rstrip("/")
    window = entry.get("batch_window_s", 0)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 <= window <= 3600:
        raise ConfigError(f"{where}: batch_window_s must be a number of seconds from 0 to 3600")
    group_by = entry.get("group_by", "group")
    if group_by not in get_args(GroupBy):
        raise ConfigError(f'{where}: group_by must be "group" or "alert"')
    events = entry.get("events")
    if events is None:
        chosen = DEFAULT_EVENTS.get(kind, frozenset())
    elif isinstance(events, list) and all(isinstance(e, str) and e for e in events):
        chosen = frozenset(events)
    else:
        raise ConfigError(f"{where}: events must be a list of event names")
    dedup = entry.get("dedup_key")
    expression = None
    if dedup is not None:
        if kind != "generic" or not isinstance(dedup, str) or not dedup.strip():
            raise ConfigError(f'{where}: dedup_key is a template string for kind = "generic"')
        from jinja2 import TemplateError

        from gateway.inlets.templates import compile_expression

        try:
            expression = compile_expression(dedup)
        except TemplateError as exc:
            raise ConfigError(f"{where}: dedup_key: {exc}") from None
    listed = entry.get("max_listed", 10)
    if isinstance(listed, bool) or not isinstance(listed, int) or not 1 <= listed <= 50:
        raise ConfigError(f"{where}: max_listed must be a whole number from 1 to 50")
    return Inlet(
        name=name,
        kind=cast(Kind, kind),
        chats=targets,
        secret=Secret(secret),
        template=template,
        parse_mode=parse_mode,
        alertmanager_url=url,
        quiet_hours=_quiet_hours(entry.get("quiet_hours"), where),
        batch_window_s=float(window),
        group_by=group_by,
        events=chosen,
        dedup_key=expression,
        max_listed=listed,
        secret_file=secret_path,
    )


def _chat(value: Any, where: str) -> ChatTarget:
    if isinstance(value, int) and not isinstance(value, bool):
        return ChatTarget(value)
    if isinstance(value, str):
        chat, _, topic = value.partition(":")
        try:
            chat_id: int | str = int(chat)
        except ValueError:
            chat_id = chat
        if (isinstance(chat_id, int) or chat_id.startswith("@")) and (not topic or topic.isdigit()):
            return ChatTarget(chat_id, int(topic) if topic else None)
    raise ConfigError(
        f'{where}: chats: {value!r} is not a chat id (-1001234567890, "@channel" or '
        '"-1001234567890:42" for a topic)'
    )


def _quiet_hours(value: Any, where: str) -> QuietHours | None:
    if value is None:
        return None
    match = QUIET_RE.match(value) if isinstance(value, str) else None
    problem = f'{where}: quiet_hours must look like "22:00-07:00 Europe/Berlin"'
    if match is None:
        raise ConfigError(problem)
    h1, m1, h2, m2, zone = match.groups()
    try:
        start, end = clock_time(int(h1), int(m1)), clock_time(int(h2), int(m2))
    except ValueError:
        raise ConfigError(problem) from None
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: quiet_hours: unknown time zone {zone!r}") from None
    return QuietHours(start, end, tz)
