"""`gateway check`'s lines for `[[inlets]]`: each inlet's template rendered against a sample
payload of its kind (and parsed as Telegram would parse it), its secret file, its chats, and
whether its `alertmanager_url` answers.

Loading the config has refused what start-up refuses already (unknown keys, template syntax
errors, a secret file others can read unless `key_permissions = "warn"`); these checks find
what only shows once a notification arrives.
"""

from __future__ import annotations

import stat
from typing import Final

from gateway import constants as c
from gateway.config import Config
from gateway.inlets.config import Inlet
from gateway.inlets.samples import rendered
from gateway.inlets.templates import DEFAULTS
from gateway.markup import MarkupError, visible_length
from gateway.ops.check import Check, Status

#: How long `gateway check` waits for an inlet's Alertmanager.
ALERTMANAGER_TIMEOUT_SECONDS: Final = 3.0


async def inlet_checks(config: Config) -> list[Check]:
    """One line per inlet (nothing without `[[inlets]]`), then one per `alertmanager_url`."""
    checks = [_inlet_check(inlet) for inlet in config.inlets]
    for inlet in config.inlets:
        if inlet.alertmanager_url:
            checks.append(await _alertmanager_check(inlet, inlet.alertmanager_url))
    return checks


def _inlet_check(inlet: Inlet) -> Check:
    name = f"inlet {inlet.name}"
    chats = ", ".join(target.key for target in inlet.chats)
    where = f"{inlet.kind}, {len(inlet.chats)} chat(s) ({chats})"
    problem = _secret_problem(inlet)
    if problem:
        return Check(name, "fail", f"{where}; {problem}", f"chmod 600 {inlet.secret_file}")
    own = inlet.template is not None
    template = inlet.template or DEFAULTS[inlet.kind]
    which = "its template" if own else "the default template"
    try:
        samples = rendered(inlet, template)
    except Exception as exc:  # what a real payload would meet: the plain fallback
        # A generic inlet's body is the operator's own: the sample may lack what theirs has.
        status: Status = "warn" if inlet.kind == "generic" else "fail"
        detail = f"{where}; {which} fails on a sample payload ({type(exc).__name__}: {exc})"
        return Check(
            name,
            status,
            detail,
            "fix the template: notifications would go out as "
            "plain text (gateway_inlet_template_errors_total)",
        )
    for what, text in samples:
        if not text.strip():
            return Check(
                name,
                "warn",
                f"{where}; {which} renders {what} as nothing",
                "the plain fallback would be sent instead",
            )
        try:
            length = visible_length(text, inlet.parse_mode)
        except MarkupError as exc:
            detail = f"{where}; {which} renders {what} as markup Telegram refuses ({exc})"
            return Check(name, "fail", detail, f"fix the template's {inlet.parse_mode} markup")
        if length > c.MAX_MESSAGE_LENGTH:
            detail = f"{where}; {which} renders {what} as {length} characters"
            return Check(name, "warn", detail, f"keep it under {c.MAX_MESSAGE_LENGTH}")
    tried = ", ".join(what for what, _ in samples)
    return Check(name, "ok", f"{where}; {which} renders {tried}; secret file 0600")


def _secret_problem(inlet: Inlet) -> str:
    path = inlet.secret_file
    if path is None:
        return ""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"secret file {path}: {exc.strerror}"
    if stat.S_IMODE(mode) & 0o077:
        return f"secret file {path} is readable by others (mode {stat.S_IMODE(mode):o})"
    return ""


async def _alertmanager_check(inlet: Inlet, url: str) -> Check:
    """`GET /api/v2/status`: one request with a short timeout, to the operator's own URL."""
    import aiohttp

    name = f"inlet {inlet.name} alertmanager"
    timeout = aiohttp.ClientTimeout(total=ALERTMANAGER_TIMEOUT_SECONDS)
    fix = "check alertmanager_url: the Silence buttons would show an error on every tap"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/api/v2/status") as resp,
        ):
            if resp.status != 200:
                return Check(name, "warn", f"{url} answered {resp.status}", fix)
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return Check(name, "warn", f"{url} cannot be reached ({reason})", fix)
    version = body.get("versionInfo", {}).get("version") if isinstance(body, dict) else None
    return Check(name, "ok", f"{url} answers (Alertmanager {version or 'version unknown'})")
