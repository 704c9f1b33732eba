"""Which parameters of which methods carry a file, and how to find and replace them.

A file parameter holds one of: `attach://<name>` (a file the gateway stores), an http(s) URL
(Telegram fetches it, or the gateway does with `"fetch": true`), or a `file_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway import constants as c

#: Method → the parameter holding its file, and the kind of file it is.
SINGLE_FILE: dict[str, tuple[str, str]] = {
    "sendPhoto": ("photo", "photo"),
    "sendDocument": ("document", "document"),
    "sendVideo": ("video", "video"),
    "sendAudio": ("audio", "audio"),
    "sendVoice": ("voice", "voice"),
    "sendAnimation": ("animation", "animation"),
}
#: Methods whose `media` holds InputMedia objects (a list for an album, one for an edit).
INPUT_MEDIA_METHODS = frozenset({"sendMediaGroup", "editMessageMedia"})
MEDIA_METHODS = frozenset({*SINGLE_FILE, *INPUT_MEDIA_METHODS})
#: Methods with a caption, checked against Telegram's 1,024 characters.
CAPTION_METHODS = frozenset({*SINGLE_FILE, "editMessageCaption"})
#: The short form's file fields and the method each becomes.
SHORT_FILE_FIELDS: dict[str, str] = {
    "photo": "sendPhoto",
    "document": "sendDocument",
    "video": "sendVideo",
    "audio": "sendAudio",
}
#: `command.meta` key holding the files a command refers to: name → FileInfo as JSON.
META_KEY = "media"
#: `command.meta` key holding the parts of a split caption after the first (sent as replies).
CAPTION_REST_KEY = "caption_rest"


@dataclass
class Ref:
    """One file parameter: where it is (`path`), what it holds, and as which kind."""

    path: str
    value: Any
    kind: str
    set: Callable[[Any], None]


def file_refs(method: str, params: dict[str, Any]) -> Iterator[Ref]:
    """Every file parameter of a call (a missing one is not reported here)."""
    if method in SINGLE_FILE:
        name, kind = SINGLE_FILE[method]
        if name in params:
            yield Ref(name, params[name], kind, _setter(params, name))
        return
    if method not in INPUT_MEDIA_METHODS:
        return
    media = params.get("media")
    items = media if isinstance(media, list) else [media]
    for index, item in enumerate(items):
        if isinstance(item, dict) and "media" in item:
            where = f"media[{index}].media" if isinstance(media, list) else "media.media"
            kind = str(item.get("type", ""))
            yield Ref(where, item["media"], kind, _setter(item, "media"))


def _setter(holder: dict[str, Any], key: str) -> Callable[[Any], None]:
    def assign(value: Any) -> None:
        holder[key] = value

    return assign


def attached_name(value: Any) -> str | None:
    """`name` of an `attach://name` value, else None."""
    if isinstance(value, str) and value.startswith(c.ATTACH_PREFIX):
        return value[len(c.ATTACH_PREFIX) :]
    return None


def is_url(value: Any) -> bool:
    """An http(s) URL (Telegram, or the gateway, fetches it)."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))
