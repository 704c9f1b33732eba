"""The token model shared by the markup parsers, and the error they raise.

A parsed text is a flat list of tokens: visible characters, each with its width in UTF-16 code
units (the unit of Telegram's limits), and the markup that opens or closes an entity. Character
offsets in error messages count code points of the input from 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gateway.errors import GatewayError

__all__ = [
    "CLOSE",
    "MARK",
    "OPEN",
    "TEXT",
    "Entity",
    "MarkupError",
    "Token",
    "text_token",
    "utf16_length",
]


class MarkupError(GatewayError):
    """The text's markup is malformed for its parse mode; the message says what and where."""


# Token kinds: a visible character, markup opening or closing an entity, and markup that belongs
# to no entity (a blockquote's ">" on a continuation line).
TEXT, OPEN, CLOSE, MARK = range(4)


@dataclass(eq=False, slots=True)
class Entity:
    """One entity of the input; identity matters, so equality is identity.

    ``reopen`` and ``close`` are the markup that opens it again on a later part and closes it at
    the end of a part, with the same attributes (a link's URL, a pre block's language).
    """

    name: str
    start: int
    reopen: str
    close: str
    is_link: bool = False


class Token(NamedTuple):
    """A visible character (``TEXT``, ``width`` UTF-16 units) or a piece of markup.

    A tuple, not a dataclass: a big text is a million tokens, and the garbage collector stops
    tracking a tuple of plain values, so its full collections (which hold the GIL, stalling the
    event loop even while the parsing runs in a thread) do not have to walk them all.
    """

    kind: int
    raw: str
    char: str = ""
    width: int = 0
    entity: Entity | None = None


def utf16_length(char: str) -> int:
    """Length of ``char`` in UTF-16 code units, the unit of Telegram's limits."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in char)


def text_token(raw: str, char: str | None = None) -> Token:
    """A visible character written as ``raw`` (``char`` when markup escapes it)."""
    char = raw if char is None else char
    return Token(TEXT, raw, char, utf16_length(char))
