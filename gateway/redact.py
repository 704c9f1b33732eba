"""Keep secrets out of logs: the bot token travels inside every Bot API URL."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

#: A token in a Bot API path (`/bot<id>:<secret>/method`, `/file/bot...`): whatever its length.
_PATH_TOKEN_RE = re.compile(r"(/bot\d+:)[^/\s?\"']+")
#: `<id>:<secret>` anywhere else a token leaks into text (real secrets are 35 characters).
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])(bot)?(\d{3,}):[A-Za-z0-9_-]{6,}")


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Replace bot tokens, and any of the `extra` secrets, with `***`."""
    text = _PATH_TOKEN_RE.sub(r"\1***", text)
    text = _TOKEN_RE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}:***", text)
    for secret in extra:
        if secret:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record's final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self._secrets)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Attach a redacting filter to every handler of the root logger. Installing again (once
    the configuration has revealed more secrets) replaces the filter with one that scrubs all
    of them: each line is scrubbed once, not once per install."""
    known = [*secrets]
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            known += [s for s in old.secrets if s not in known]
            handler.removeFilter(old)
    flt = RedactingFilter(known)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt
