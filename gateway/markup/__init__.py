"""Parse Telegram message markup the way the Bot API server does.

The three parse modes are read as tdlib's ``parse_html``, ``parse_markdown_v2`` and
``parse_markdown`` read them, into the flat list of tokens of ``gateway.markup.tokens``.
``visible_text`` and ``visible_length`` are what Telegram shows and measures; ``gateway.split``
cuts the tokens into parts and ``render`` writes them back as text.
"""

from __future__ import annotations

from typing import Final

from gateway.constants import PARSE_MODES
from gateway.markup.html import tokenize_html
from gateway.markup.markdown import (
    LEGACY_MARKERS,
    V2_ESCAPED,
    tokenize_markdown,
    tokenize_markdown_v2,
)
from gateway.markup.tokens import (
    CLOSE,
    MARK,
    OPEN,
    TEXT,
    Entity,
    MarkupError,
    Token,
    text_token,
    utf16_length,
)

__all__ = [
    "CLOSE",
    "MARK",
    "OPEN",
    "TEXT",
    "Entity",
    "MarkupError",
    "Token",
    "escape",
    "normalise_mode",
    "render",
    "tokenize",
    "utf16_length",
    "visible_length",
    "visible_text",
]

_MODES: Final = {mode.lower(): mode for mode in PARSE_MODES}


def normalise_mode(parse_mode: str | None) -> str | None:
    """The canonical spelling of ``parse_mode`` (case-insensitive), None for plain text.

    Raises MarkupError for a parse mode Telegram does not know.
    """
    if not parse_mode:
        return None
    try:
        return _MODES[parse_mode.lower()]
    except KeyError:
        expected = ", ".join(PARSE_MODES)
        raise MarkupError(f"unsupported parse_mode {parse_mode!r}, expected {expected}") from None


def tokenize(text: str, mode: str | None) -> list[Token]:
    """Parse ``text`` in the normalised parse ``mode``; raises MarkupError if it is malformed."""
    if mode == "HTML":
        return tokenize_html(text)
    if mode == "MarkdownV2":
        return tokenize_markdown_v2(text)
    if mode == "Markdown":
        return tokenize_markdown(text)
    return [text_token(char) for char in text]


def escape(text: str, mode: str | None) -> str:
    """Escape plain ``text`` so that ``mode`` shows it literally."""
    if mode == "HTML":
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = {"MarkdownV2": V2_ESCAPED, "Markdown": LEGACY_MARKERS}.get(mode or "", frozenset())
    return "".join(f"\\{char}" if char in escaped else char for char in text)


def render(tokens: list[Token], mode: str | None) -> str:
    """Write ``tokens`` (possibly cut, reopened or closed) back as text in ``mode``."""
    out: list[str] = []
    previous = ""
    for token in tokens:
        if not token.raw:
            continue
        markup = token.kind != TEXT
        # "___" is ambiguous in MarkdownV2; Telegram's documented separator is a carriage return.
        if mode == "MarkdownV2" and markup and previous.endswith("_") and token.raw[0] == "_":
            out.append("\r")
        out.append(token.raw)
        previous = token.raw if markup else ""
    return "".join(out)


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram shows for ``text`` once ``parse_mode`` markup is parsed.

    Raises MarkupError if the markup is malformed.
    """
    tokens = tokenize(text, normalise_mode(parse_mode))
    return "".join(t.char for t in tokens if t.kind == TEXT)


def visible_length(text: str, parse_mode: str | None) -> int:
    """Length Telegram checks against its limits: UTF-16 code units after parsing the markup.

    Raises MarkupError if the markup is malformed.
    """
    tokens = tokenize(text, normalise_mode(parse_mode))
    return sum(t.width for t in tokens)
