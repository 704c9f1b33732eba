"""`[[routes]]`: which bot command goes to which internal service.

```toml
[[routes]]
command = "deploy"                          # /deploy (and /deploy@YourBot)
url = "https://ci.internal/hooks/deploy"    # the gateway POSTs the command here
secret_file = "config/secrets/deploy.key"   # HMAC key for X-Gateway-Signature (generated)
timeout_s = 10
description = "Deploy a service: /deploy <service> <version>"
allowed_users = [1111]                      # optional subset of the allowed users
max_attempts = 3                            # optional; 5xx, timeouts and network errors retry
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.secretfiles import Secret, read_or_create_secret

#: Telegram's rule for bot command names (setMyCommands).
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
#: Commands the gateway answers itself.
RESERVED = frozenset({"start", "help"})
FIELDS = frozenset(
    {"command", "url", "secret_file", "timeout_s", "description", "allowed_users", "max_attempts"}
)


@dataclass(frozen=True)
class Route:
    """One bot command dispatched to one internal service."""

    command: str
    url: str
    secret: Secret
    timeout_s: float = 10.0
    description: str = ""
    #: None: every allowed user may use it.
    allowed_users: frozenset[int] | None = None
    max_attempts: int = 3

    def may_use(self, user_id: int) -> bool:
        return self.allowed_users is None or user_id in self.allowed_users


def parse_routes(
    raw: Any, base: Path, source: str, permissions: str = "refuse"
) -> tuple[Route, ...]:
    """The `[[routes]]` array of tables; secret files are read (or generated)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'routes' must be an array of tables ([[routes]])")
    routes: list[Route] = []
    for number, entry in enumerate(raw, start=1):
        where = f"{source}: [[routes]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
        routes.append(_route(entry, base, where, permissions))
    seen: set[str] = set()
    for route in routes:
        if route.command in seen:
            raise ConfigError(f"{source}: two [[routes]] for /{route.command}")
        seen.add(route.command)
    return tuple(routes)


def _route(entry: dict[str, Any], base: Path, where: str, permissions: str) -> Route:
    command = entry.get("command")
    if not isinstance(command, str) or not COMMAND_RE.match(command):
        raise ConfigError(f"{where}: command must be 1-32 of a-z 0-9 _ (without the /)")
    where = f"{where} (/{command})"
    if command in RESERVED:
        raise ConfigError(f"{where}: /{command} is the gateway's own command")
    url = entry.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
        raise ConfigError(f"{where}: url must be an http(s) URL")
    if not urlsplit(url).hostname:
        raise ConfigError(f"{where}: url has no host")
    secret_name = entry.get("secret_file", f"config/secrets/route_{command}.key")
    if not isinstance(secret_name, str) or not secret_name:
        raise ConfigError(f"{where}: secret_file must be a path")
    secret_path = Path(secret_name) if Path(secret_name).is_absolute() else base / secret_name
    secret = read_or_create_secret(
        secret_path, secret_name, f"signing key of /{command}", permissions
    )
    if len(secret) < 16:
        raise ConfigError(f"{secret_name}: the signing key must be at least 16 characters")
    timeout = entry.get("timeout_s", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"{where}: timeout_s must be a number of seconds in (0, 300]")
    description = entry.get("description", f"/{command}")
    if not isinstance(description, str) or not 1 <= len(description) <= 256:
        raise ConfigError(f"{where}: description must be 1-256 characters")
    users = entry.get("allowed_users")
    if users is not None and (
        not isinstance(users, list)
        or not all(isinstance(u, int) and not isinstance(u, bool) for u in users)
    ):
        raise ConfigError(f"{where}: allowed_users must be a list of numeric user ids")
    attempts = entry.get("max_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise ConfigError(f"{where}: max_attempts must be a whole number from 1 to 20")
    return Route(
        command=command,
        url=url,
        secret=Secret(secret),
        timeout_s=float(timeout),
        description=description,
        allowed_users=frozenset(users) if users is not None else None,
        max_attempts=attempts,
    )
