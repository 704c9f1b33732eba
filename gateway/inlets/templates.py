"""Jinja2 templates of the inlets: sandboxed, autoescaped for HTML, with a default per kind.

A template runs in Jinja2's `SandboxedEnvironment` (no attribute access to Python internals),
with HTML autoescaping when the inlet's parse_mode is HTML, so a label value like `<script>`
stays text. Undefined names render empty, as payloads differ between versions of a tool. A
template that fails at run time is not fatal: the caller falls back to `plain` text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from jinja2 import Environment, Template
from jinja2.sandbox import SandboxedEnvironment

from gateway import constants as c


def other_labels(labels: Any, exclude: Any = ()) -> str:
    """`k=v, k=v` of the labels not in `exclude` (the group's own labels, alertname)."""
    if not isinstance(labels, Mapping):
        return ""
    skip = set(exclude) | {"alertname"}
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


def _environment(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=html, trim_blocks=True, lstrip_blocks=True)
    env.globals["other_labels"] = other_labels
    env.filters["other_labels"] = other_labels
    return env


_HTML = _environment(True)
_TEXT = _environment(False)
#: The built-in templates are the gateway's own code, not the operator's: they need no sandbox
#: (which costs a check on every attribute and call), only the escaping.
_TRUSTED = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_TRUSTED.globals["other_labels"] = other_labels


def compile_template(source: str, *, html: bool) -> Template:
    """A template from its source; raises jinja2.TemplateError (syntax errors)."""
    return (_HTML if html else _TEXT).from_string(source)


def compile_expression(source: str) -> Template:
    """A short template whose output is a key (`dedup_key`); never escaped."""
    return _TEXT.from_string(source)


def render(template: Template, context: Mapping[str, Any]) -> str:
    """The rendered text, stripped; raises on template errors (any Exception)."""
    return template.render(**context).strip()


def plain(title: str, lines: list[str]) -> str:
    """The fallback rendering: a title and lines, plain text within Telegram's limit."""
    text = "\n".join([title, *lines])
    if len(text) > c.MAX_MESSAGE_LENGTH:
        text = text[: c.MAX_MESSAGE_LENGTH - 1] + "…"
    return text


def plain_json(title: str, payload: Any) -> str:
    """Fallback for payloads with no structure we know: the JSON, cut to fit."""
    body = json.dumps(payload, indent=1, ensure_ascii=False, default=str)
    return plain(title, [body])


ALERTS: Final = """\
{% if storm %}
🌪 <b>{{ entries|length }} notifications</b> from {{ inlet }} ({{ firing_total }} firing, \
{{ resolved_total }} resolved)
{% for e in entries[:max_listed] %}
{% if e.status == "firing" %}• 🔥 {{ e.title }} ({{ e.count }})\
{% else %}• <s>{{ e.title }}</s> ✅{% endif %}

{% endfor %}
{% if entries|length > max_listed %}… and {{ entries|length - max_listed }} more
{% endif %}
{% else %}
{% if status == "firing" %}
🔥 <b>FIRING{% if firing|length > 1 %} x{{ firing|length }}{% endif %}</b> {{ title }}
{% else %}
✅ <b>RESOLVED</b> {{ title }}
{% endif %}
{% if message %}{{ message }}
{% endif %}
{% for a in firing[:max_listed] %}
• <b>{{ a["labels"]["alertname"] }}</b>{% if a["annotations"]["summary"] %}: \
{{ a["annotations"]["summary"] }}{% endif %}{% if a["others"] %} <i>{{ a["others"] }}</i>{% endif %}

{% endfor %}
{% if firing|length > max_listed %}… and {{ firing|length - max_listed }} more firing
{% endif %}
{% for a in resolved[:max_listed] %}
• <s>{{ a["labels"]["alertname"] }}{% if a["annotations"]["summary"] %}: \
{{ a["annotations"]["summary"] }}{% endif %}</s> resolved
{% endfor %}
{% if resolved|length > max_listed %}… and {{ resolved|length - max_listed }} more resolved
{% endif %}
{% if silence %}🔕 Silenced by {{ silence.by }} until {{ silence.until }}
{% endif %}
{% if ack %}👀 Acknowledged by {{ ack.by }}
{% endif %}
{% endif %}
"""

GITHUB: Final = """\
{% set repo = payload.repository.full_name if payload.repository else "" %}
{% set who = payload.sender.login if payload.sender else "someone" %}
{% if event == "push" %}
📦 <b>{{ repo }}</b>: {{ who }} pushed {{ payload.commits|length }} commit(s) to \
<code>{{ payload.ref|replace("refs/heads/", "") }}</code>
{% for commit in payload.commits[:5] %}
• <a href="{{ commit.url }}">{{ commit.id[:7] }}</a> {{ commit.message.split("\\n")[0] }}
{% endfor %}
{% if payload.compare %}<a href="{{ payload.compare }}">Compare changes</a>{% endif %}
{% elif event == "pull_request" %}
🔀 <b>{{ repo }}</b>: {{ who }} {{ action }} pull request \
<a href="{{ payload.pull_request.html_url }}">#{{ payload.pull_request.number }} \
{{ payload.pull_request.title }}</a>
{% elif event == "issues" %}
🐛 <b>{{ repo }}</b>: {{ who }} {{ action }} issue \
<a href="{{ payload.issue.html_url }}">#{{ payload.issue.number }} {{ payload.issue.title }}</a>
{% elif event == "issue_comment" %}
💬 <b>{{ repo }}</b>: {{ who }} {{ action }} a comment on \
<a href="{{ payload.comment.html_url }}">#{{ payload.issue.number }} {{ payload.issue.title }}</a>
{{ payload.comment.body|truncate(300) }}
{% elif event == "release" %}
🏷 <b>{{ repo }}</b>: {{ who }} {{ action }} release \
<a href="{{ payload.release.html_url }}">{{ payload.release.name or payload.release.tag_name }}</a>
{% elif event == "workflow_run" %}
{% set run = payload.workflow_run %}
{% if run.conclusion == "success" %}✅{% else %}❌{% endif %} <b>{{ repo }}</b>: workflow \
<a href="{{ run.html_url }}">{{ run.name }}</a> {{ run.conclusion or run.status }} on \
<code>{{ run.head_branch }}</code>
{% elif event == "check_suite" %}
{% set suite = payload.check_suite %}
{% if suite.conclusion == "success" %}✅{% else %}❌{% endif %} <b>{{ repo }}</b>: checks \
{{ suite.conclusion or suite.status }} on <code>{{ suite.head_branch }}</code>
{% else %}
<b>{{ repo }}</b>: {{ event }}{% if action %} {{ action }}{% endif %} by {{ who }}
{% endif %}
"""

GITLAB: Final = """\
{% set repo = payload.project.path_with_namespace if payload.project else "" %}
{% set who = payload.user.username if payload.user else (payload.user_username or \
payload.user_name or "someone") %}
{% if event == "push" %}
📦 <b>{{ repo }}</b>: {{ who }} pushed {{ payload.total_commits_count }} commit(s) to \
<code>{{ payload.ref|replace("refs/heads/", "") }}</code>
{% for commit in payload.commits[:5] %}
• <a href="{{ commit.url }}">{{ commit.id[:8] }}</a> {{ commit.message.split("\\n")[0] }}
{% endfor %}
{% elif event == "merge_request" %}
{% set mr = payload.object_attributes %}
🔀 <b>{{ repo }}</b>: {{ who }} {{ mr.action or mr.state }} merge request \
<a href="{{ mr.url }}">!{{ mr.iid }} {{ mr.title }}</a>
{% elif event == "pipeline" %}
{% set p = payload.object_attributes %}
{% if p.status == "success" %}✅{% elif p.status == "failed" %}❌{% else %}⏳{% endif %} \
<b>{{ repo }}</b>: pipeline <a href="{{ p.url or (payload.project.web_url ~ '/-/pipelines/' ~ \
p.id) }}">#{{ p.id }}</a> {{ p.status }} on <code>{{ p.ref }}</code>
{% else %}
<b>{{ repo }}</b>: {{ event }} by {{ who }}
{% endif %}
"""

GENERIC: Final = """\
<b>{{ inlet }}</b>
<pre>{{ payload|tojson(indent=1)|truncate(3500) }}</pre>
"""

DEFAULTS: Final[dict[str, Template]] = {
    "alertmanager": _TRUSTED.from_string(ALERTS),
    "grafana": _TRUSTED.from_string(ALERTS),
    "github": _TRUSTED.from_string(GITHUB),
    "gitlab": _TRUSTED.from_string(GITLAB),
    "generic": _TRUSTED.from_string(GENERIC),
}
