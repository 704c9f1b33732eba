"""HTML markup as the Bot API server (tdlib's ``parse_html``) reads it."""

from __future__ import annotations

import re
from typing import Final

from gateway.markup.tokens import CLOSE, OPEN, Entity, MarkupError, Token, text_token

__all__ = ["tokenize_html"]

_HTML_TAGS: Final = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"code", "pre", "blockquote", "tg-emoji"}
)
_HTML_LINKS: Final = frozenset({"a", "tg-emoji"})
_HTML_NAMED: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_WORD = re.compile(r"[^\s>]*")
_HTML_ATTRIBUTE = re.compile(r"[^\s=>]+")
_HTML_TOKEN_VALUE = re.compile(r"[A-Za-z0-9.\-]*")
_HTML_NUMERIC = re.compile(r"&#(x[0-9a-fA-F]*|[0-9]*)")
_HTML_ALPHA = re.compile(r"&([A-Za-z]*)")


def _html_entity(text: str, i: int) -> tuple[str, int] | None:
    """Decode the character reference at ``text[i]`` as Telegram does; None if it is literal."""
    match = _HTML_NUMERIC.match(text, i)
    if match:
        if match.end() - i >= 10:
            return None
        digits = match.group(1)
        hexadecimal = digits.startswith("x")
        digits = digits[1:] if hexadecimal else digits
        value = int(digits, 16 if hexadecimal else 10) if digits else 0
        if value == 0 or value >= 0x10FFFF:
            return None
        if 0xD800 <= value <= 0xDFFF:
            raise MarkupError(f"character reference at character {i} is a lone surrogate")
        char, end = chr(value), match.end()
    else:
        named = _HTML_ALPHA.match(text, i)
        assert named is not None  # the pattern matches any "&"
        if named.group(1) not in _HTML_NAMED:
            return None
        char, end = _HTML_NAMED[named.group(1)], named.end()
    return char, end + 1 if text.startswith(";", end) else end


def _html_unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        decoded = _html_entity(value, i) if value[i] == "&" else None
        if decoded is None:
            out.append(value[i])
            i += 1
        else:
            out.append(decoded[0])
            i = decoded[1]
    return "".join(out)


def _html_tag(text: str, start: int) -> tuple[int, str, bool, dict[str, str]]:
    """Read the tag at ``text[start]``: its end, lowercase name, whether it closes, attributes."""
    closing = text.startswith("</", start)
    i = start + 2 if closing else start + 1
    name_match = _HTML_WORD.match(text, i)
    assert name_match is not None  # the pattern accepts the empty string
    name, i = name_match.group().lower(), name_match.end()
    shown = f"</{name}>" if closing else f"<{name}>"
    attributes: dict[str, str] = {}
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            raise MarkupError(f"tag {shown} at character {start} has no closing '>'")
        if text[i] == ">":
            return i + 1, name, closing, attributes
        attribute = _HTML_ATTRIBUTE.match(text, i)
        if closing or attribute is None:
            raise MarkupError(f"malformed tag {shown} at character {start}")
        key, i = attribute.group().lower(), attribute.end()
        while i < len(text) and text[i].isspace():
            i += 1
        value = ""
        if text.startswith("=", i):
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
            if i < len(text) and text[i] in "\"'":
                end = text.find(text[i], i + 1)
                if end < 0:
                    raise MarkupError(f"unterminated attribute value in {shown} at character {i}")
                value, i = _html_unescape(text[i + 1 : end]), end + 1
            else:
                token = _HTML_TOKEN_VALUE.match(text, i)
                assert token is not None  # the pattern accepts the empty string
                value, i = token.group().lower(), token.end()
                if i < len(text) and not (text[i].isspace() or text[i] == ">"):
                    raise MarkupError(f"attribute value at character {i} in {shown} must be quoted")
        attributes[key] = value


def tokenize_html(text: str) -> list[Token]:
    """Parse HTML; raises MarkupError if Telegram would refuse it."""
    tokens: list[Token] = []
    stack: list[Entity] = []
    i = 0
    while i < len(text):
        char = text[i]
        decoded = _html_entity(text, i) if char == "&" else None
        if decoded is not None:
            tokens.append(text_token(text[i : decoded[1]], decoded[0]))
            i = decoded[1]
            continue
        if char != "<":
            tokens.append(text_token(char))
            i += 1
            continue
        end, name, closing, attributes = _html_tag(text, i)
        if closing:
            if not stack:
                raise MarkupError(f"unexpected end tag </{name}> at character {i}: no tag is open")
            top = stack[-1]
            if name and name != top.name:
                raise MarkupError(
                    f"end tag </{name}> at character {i} does not match"
                    f" <{top.name}> opened at character {top.start}"
                )
            tokens.append(Token(CLOSE, text[i:end], entity=stack.pop()))
        else:
            if name not in _HTML_TAGS:
                raise MarkupError(f"unsupported HTML tag <{name}> at character {i}")
            if name == "span" and attributes.get("class") != "tg-spoiler":
                raise MarkupError(f'<span> at character {i} needs class="tg-spoiler"')
            entity = Entity(name, i, text[i:end], f"</{name}>", name in _HTML_LINKS)
            stack.append(entity)
            tokens.append(Token(OPEN, text[i:end], entity=entity))
        i = end
    if stack:
        raise MarkupError(f"unclosed <{stack[-1].name}> opened at character {stack[-1].start}")
    return tokens
