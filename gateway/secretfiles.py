"""The secrets files: the bot token, the allowed users, generated secrets.

Read once at start-up by `gateway.config.load_config`. Messages name the file as configured and
never contain a secret. A secrets file that group or others may read is refused (or, with
`[server] key_permissions = "warn"`, reported) before it is used: `check_permissions`.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from gateway import constants as c
from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_TOKEN = "GATEWAY_BOT_TOKEN"
#: `[server] key_permissions`: what a secrets file readable by others does to start-up.
REFUSE, WARN = "refuse", "warn"


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(self._value)


def check_permissions(path: Path, name: str, policy: str = REFUSE) -> None:
    """Refuse (ConfigError, one line naming the file and the fix) or warn when group or others
    have any access to the secrets file at `path`; nothing when it is missing."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing or unreadable: reading it says so
    if not mode & 0o077:
        return
    problem = (
        f"{name}: secrets file is accessible by group or others (mode {mode & 0o777:04o}); "
        f"run: chmod 600 {path}"
    )
    if policy == WARN:
        logger.warning('%s (key_permissions = "warn": starting anyway)', problem)
        return
    raise ConfigError(f'{problem} (or set [server] key_permissions = "warn")')


def read_token(
    path: Path,
    name: str,
    is_default: bool,
    env: Mapping[str, str],
    permissions: str = REFUSE,
) -> Secret | None:
    """The bot token from GATEWAY_BOT_TOKEN or its file; None (sandbox mode) when neither
    exists and the file is the default one."""
    if env.get(ENV_TOKEN, "").strip():
        return _checked_token(env[ENV_TOKEN].strip(), ENV_TOKEN)
    check_permissions(path, name, permissions)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if is_default:
            return None  # nothing configured: sandbox mode
        raise ConfigError(f"{name}: bot token file not found") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{name}: cannot read the bot token file") from None
    if not text:
        raise ConfigError(f"{name}: the bot token file is empty")
    return _checked_token(text, name)


def _checked_token(token: str, where: str) -> Secret:
    bot_id, sep, rest = token.partition(":")
    if not sep or not bot_id.isdigit() or not rest or any(ch.isspace() for ch in rest):
        # Never echo the value: it may be a real token with a typo.
        raise ConfigError(f"{where}: not a bot token (expected '<digits>:<secret>')")
    return Secret(token)


def read_allowed_users(path: Path, name: str, demo_user: int | None) -> frozenset[int]:
    """The allowed user ids: one per line, `#` comments; `demo_user` when the file is
    missing in sandbox mode."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if demo_user is not None:
            return frozenset({demo_user})
        raise ConfigError(
            f"{name}: allowed users file not found (one numeric Telegram user id per line)"
        ) from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{name}: cannot read the allowed users file") from None
    users: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            users.add(int(entry))
        except ValueError:
            raise ConfigError(
                f"{name}:{number}: {entry!r} is not a numeric Telegram user id"
            ) from None
    if not users:
        raise ConfigError(f"{name}: no user ids in the allowed users file")
    return frozenset(users)


def read_or_create_secret(path: Path, name: str, what: str, permissions: str = REFUSE) -> str:
    """A secret from its file, generated (32 random bytes, mode 0600) when the file is missing.

    `name` is the path as configured (for messages), `what` says what the secret is for,
    `permissions` the `key_permissions` policy for a file others can read.
    """
    check_permissions(path, name, permissions)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{name}: cannot read the {what} file") from None
    value = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot save the {what} ({exc.strerror})") from None
    logger.info("generated a %s in %s", what, name)
    return value


def read_webhook_secret(path: Path, name: str, permissions: str = REFUSE) -> Secret:
    """The webhook's secret token, checked against Telegram's rules (generated if missing)."""
    value = read_or_create_secret(path, name, "webhook secret token", permissions)
    if not 1 <= len(value) <= c.SECRET_TOKEN_MAX_LENGTH:
        raise ConfigError(f"{name}: the webhook secret must be 1-256 characters long")
    if not set(value) <= c.SECRET_TOKEN_ALPHABET:
        raise ConfigError(f"{name}: the webhook secret may only contain A-Z a-z 0-9 _ -")
    return Secret(value)
