"""Log line formats: the plain text one for people, one JSON object per line for collectors.

A log call tags its line with what it is about through `extra=` (see `command_fields`); the JSON
format carries those tags as fields, so a log pipeline can follow one command or one chat.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

#: The record attributes a log call may set with `extra=`, in the order they are written.
CONTEXT_FIELDS = ("command_id", "chat_id", "method")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ["command_id", "chat_id", "method"],
    ["exception"]}`, one object per line (the message's newlines are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(kind: str) -> logging.Formatter:
    """The formatter for `--log-format` `text` or `json`."""
    return JsonFormatter() if kind == "json" else logging.Formatter(PLAIN_FORMAT)
