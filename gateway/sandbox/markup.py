"""Message text and entities: the rules shared by the HTML and Markdown parsers.

Offsets and lengths are in UTF-16 code units, as in the Bot API. After parsing, the text is
normalised the way Telegram normalises it: leading and trailing whitespace is trimmed (entities
shift with it), empty entities disappear, entities are sorted by offset, and Telegram's own
entity detection adds `url`, `email`, `mention`, `hashtag`, `cashtag` and `bot_command`
entities where they do not clash with explicit ones (bot commands are detected only in chats
that contain a bot other than the sender, i.e. not in a bot's messages to a private chat).

The detection covers the common shapes only: URLs need a scheme (`https://x`, `tg://x`);
Telegram also links bare domains and phone numbers, which the sandbox does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_TRIM = " \t\n\r\v\f"
#: Explicit entities that auto-detected ones must not overlap.
_OPAQUE = frozenset({"code", "pre", "text_link", "text_mention", "custom_emoji", "url", "email"})
_DETECTORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"(?<![\w/@.])(?:https?|tg|ton)://[^\s<>\"]+", re.IGNORECASE)),
    (
        "email",
        re.compile(
            r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
            r"(?![\w@])"
        ),
    ),
    (
        "bot_command",
        re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])"),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w{1,256}")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Z]{3,8}(?![\w$])")),
)
ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)


class EntityParseError(ValueError):
    """A parse_mode error; its message follows `Bad Request: can't parse entities: `."""


@dataclass
class Parsed:
    """Plain text and its Bot API entities (dicts in wire form)."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Bot API offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def byte_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of `text[index]`, the unit of Telegram's parse error positions."""
    return len(text[:index].encode("utf-8", "surrogatepass"))


def check_link(url: str) -> str | None:
    """Telegram's link normalisation: `example.com` → `http://example.com/`; None if invalid."""
    url = url.strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    if re.match(r"(?i)(tg|ton)://", url):
        return url
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    normal = f"{scheme}://{parts.netloc}{parts.path or '/'}"
    if parts.query:
        normal += f"?{parts.query}"
    if parts.fragment:
        normal += f"#{parts.fragment}"
    return normal


def detect_entities(text: str, *, bot_commands: bool) -> list[dict[str, Any]]:
    """Entities Telegram finds by itself in `text` (UTF-16 offsets, non-overlapping)."""
    found: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _DETECTORS:
        if kind == "bot_command" and not bot_commands:
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind == "url":
                end = start + len(match.group().rstrip(".,;:!?'\")]"))
            if kind == "hashtag" and match.group()[1:].isdigit():
                continue
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append((start, end, kind))
    return [
        {
            "type": kind,
            "offset": utf16_len(text[:start]),
            "length": utf16_len(text[start:end]),
        }
        for start, end, kind in found
    ]


def normalize(parsed: Parsed, *, bot_commands: bool) -> Parsed:
    """Trim the text, clip/drop/sort entities and add detected ones, as Telegram does.

    The caller decides what an empty result means (`message text is empty`).
    """
    text = parsed.text
    stripped_left = text.lstrip(_TRIM)
    shift = utf16_len(text) - utf16_len(stripped_left)
    text = stripped_left.rstrip(_TRIM)
    total = utf16_len(text)
    entities: list[dict[str, Any]] = []
    for raw in parsed.entities:
        entity = {key: value for key, value in raw.items() if not key.startswith("_")}
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, total)
        if end <= start:
            continue
        entity["offset"], entity["length"] = start, end - start
        entities.append(entity)
    opaque = [(e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] in _OPAQUE]
    for entity in detect_entities(text, bot_commands=bot_commands):
        start, end = entity["offset"], entity["offset"] + entity["length"]
        if any(start < o_end and o_start < end for o_start, o_end in opaque):
            continue
        if any(e["type"] == entity["type"] and e["offset"] == start for e in entities):
            continue
        entities.append(entity)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return Parsed(text, entities)


def explicit_entities(value: Any) -> list[dict[str, Any]]:
    """Validate the `entities` parameter (a JSON array of MessageEntity)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise EntityParseError("expected an Array of MessageEntity")
    entities = []
    for item in value:
        if not isinstance(item, dict):
            raise EntityParseError("expected a MessageEntity object")
        kind, offset, length = item.get("type"), item.get("offset"), item.get("length")
        if not isinstance(kind, str) or kind not in ENTITY_TYPES:
            raise EntityParseError("unsupported entity type")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0:
            raise EntityParseError("entity offset and length must be non-negative integers")
        entity: dict[str, Any] = {"type": kind, "offset": offset, "length": length}
        if kind == "text_link":
            url = check_link(str(item.get("url", "")))
            if url is None:
                continue
            entity["url"] = url
        elif kind == "pre" and item.get("language"):
            entity["language"] = str(item["language"])
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = str(item.get("custom_emoji_id", ""))
        elif kind == "text_mention" and isinstance(item.get("user"), dict):
            entity["user"] = item["user"]
        entities.append(entity)
    return entities
