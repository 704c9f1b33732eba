"""Split and truncate message text so that Telegram accepts every part.

Telegram measures a message after parsing its markup, in UTF-16 code units, and refuses one over
``MAX_MESSAGE_LENGTH`` or one whose markup it cannot parse. This module parses the three parse
modes the way the Bot API server does (tdlib's ``parse_html``, ``parse_markdown_v2`` and
``parse_markdown``) into a flat list of tokens: visible characters, which are never cut, and the
markup that opens or closes an entity. Cuts land on a blank line, else a line break, else other
whitespace, else between two characters; entities open at a cut are closed at the end of the part
and opened again, with the same attributes, at the start of the next.

Character offsets in error messages count code points of the input from 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from gateway.constants import MAX_MESSAGE_LENGTH, PARSE_MODES
from gateway.errors import GatewayError

__all__ = ["MarkupError", "split_text", "truncate_text", "visible_length", "visible_text"]


class MarkupError(GatewayError):
    """The text's markup is malformed for its parse mode; the message says what and where."""


_TEXT, _OPEN, _CLOSE, _MARK = range(4)
_PARAGRAPH, _LINE, _WORD = 3, 2, 1
_MODES: Final = {mode.lower(): mode for mode in PARSE_MODES}

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

# Outside code and pre every one of these is markup, or an error when unescaped; the newline only
# matters because it can end a blockquote.
_V2_RESERVED: Final = frozenset("_*[]()~`>#+-=|{}.!\n")
_V2_ESCAPED: Final = frozenset("_*[]()~`>#+-=|{}.!\\")
_LEGACY_MARKERS: Final = frozenset("_*`[")
_V2_SIMPLE: Final = {"*": "bold", "~": "strikethrough", "[": "link"}
# Non-breaking spaces join words, so they are not a place to cut.
_NON_BREAKING: Final = frozenset("\u00a0\u2007\u202f")


@dataclass(eq=False, slots=True)
class _Entity:
    """One entity of the input; identity matters, so equality is identity."""

    name: str
    start: int
    reopen: str
    close: str
    is_link: bool = False


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    raw: str
    char: str = ""
    width: int = 0
    entity: _Entity | None = None


def _units(char: str) -> int:
    return sum(2 if ord(c) > 0xFFFF else 1 for c in char)


def _text(raw: str, char: str | None = None) -> _Token:
    char = raw if char is None else char
    return _Token(_TEXT, raw, char, _units(char))


def _is_space(char: str) -> bool:
    # Zero-width characters (a MarkdownV2 carriage return) can be dropped at a cut like space.
    return char == "" or (char.isspace() and char not in _NON_BREAKING)


def _normalise_mode(parse_mode: str | None) -> str | None:
    if not parse_mode:
        return None
    try:
        return _MODES[parse_mode.lower()]
    except KeyError:
        expected = ", ".join(PARSE_MODES)
        raise MarkupError(f"unsupported parse_mode {parse_mode!r}, expected {expected}") from None


# --- HTML ---------------------------------------------------------------------------------------


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


def _tokenize_html(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    stack: list[_Entity] = []
    i = 0
    while i < len(text):
        char = text[i]
        decoded = _html_entity(text, i) if char == "&" else None
        if decoded is not None:
            tokens.append(_text(text[i : decoded[1]], decoded[0]))
            i = decoded[1]
            continue
        if char != "<":
            tokens.append(_text(char))
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
            tokens.append(_Token(_CLOSE, text[i:end], entity=stack.pop()))
        else:
            if name not in _HTML_TAGS:
                raise MarkupError(f"unsupported HTML tag <{name}> at character {i}")
            if name == "span" and attributes.get("class") != "tg-spoiler":
                raise MarkupError(f'<span> at character {i} needs class="tg-spoiler"')
            entity = _Entity(name, i, text[i:end], f"</{name}>", name in _HTML_LINKS)
            stack.append(entity)
            tokens.append(_Token(_OPEN, text[i:end], entity=entity))
        i = end
    if stack:
        raise MarkupError(f"unclosed <{stack[-1].name}> opened at character {stack[-1].start}")
    return tokens


# --- MarkdownV2 and Markdown -------------------------------------------------------------------


def _pre_opener(text: str, i: int) -> tuple[int, str]:
    """End of the ``` opener at ``text[i]`` (language and one newline included), and language."""
    j = end = i + 3
    while end < len(text) and not text[end].isspace() and text[end] != "`":
        end += 1
    language = ""
    if end != j and end < len(text) and text[end] != "`":
        language, j = text[j:end], end
    if j < len(text) and text[j] in "\r\n":
        pair = j + 1 < len(text) and text[j + 1] in "\r\n" and text[j] != text[j + 1]
        j += 2 if pair else 1
    return j, language


def _url_end(text: str, i: int, escapes: bool) -> int:
    """Index after the ``)`` closing the URL whose ``(`` is at ``text[i]``."""
    j = i + 1
    while j < len(text) and text[j] != ")":
        j += 2 if escapes and text[j] == "\\" and j + 1 < len(text) else 1
    if j >= len(text):
        raise MarkupError(f"URL starting at character {i} has no closing ')'")
    return j + 1


def _v2_escape_url(url: str) -> str:
    return url.replace("\\", "\\\\").replace(")", "\\)")


def _v2_ends(entity: _Entity, text: str, i: int) -> bool:
    name, char = entity.name, text[i]
    nxt = text[i + 1 : i + 2]
    return {
        "bold": char == "*",
        "italic": char == "_" and nxt != "_",
        "underline": text.startswith("__", i),
        "strikethrough": char == "~",
        "spoiler": text.startswith("||", i),
        "code": char == "`",
        "pre": text.startswith("```", i),
        "link": char == "]",
        "custom emoji": char == "]",
    }.get(name, False)


class _V2Parser:
    """MarkdownV2 as tdlib's ``parse_markdown_v2`` reads it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[_Token] = []
        self.stack: list[_Entity] = []
        self.quote: _Entity | None = None
        self.line_start = True

    def parse(self) -> list[_Token]:
        text, i = self.text, 0
        while i < len(text):
            char = text[i]
            if char == "\\" and i + 1 < len(text) and 0 < ord(text[i + 1]) <= 126:
                self._char(text[i : i + 2], text[i + 1])
                i += 2
                continue
            verbatim = bool(self.stack) and self.stack[-1].name in ("code", "pre")
            if char not in ("`" if verbatim else _V2_RESERVED):
                self._char(char, char)
                i += 1
            elif self.stack and self._ends_here(i):
                i = self._close(i)
            else:
                i = self._open(i)
        if self.quote is not None:
            self._end_quote(len(text))
        if self.stack:
            top = self.stack[-1]
            raise MarkupError(f"unclosed {top.name} ({top.reopen}) opened at character {top.start}")
        return self.tokens

    def _char(self, raw: str, char: str) -> None:
        # Telegram drops carriage returns; they separate markers such as _ and __.
        self.tokens.append(_text(raw, "" if char == "\r" else char))
        if char != "\r":
            self.line_start = char == "\n"

    def _ends_here(self, i: int) -> bool:
        if self.quote is not None and self.text[i] == "\n" and not self._quote_continues(i):
            return True
        return _v2_ends(self.stack[-1], self.text, i)

    def _quote_continues(self, i: int) -> bool:
        return self.text.startswith(">", i + 1)

    def _push(self, name: str, start: int, raw: str, close: str, is_link: bool = False) -> None:
        entity = _Entity(name, start, raw, close, is_link)
        self.stack.append(entity)
        self.tokens.append(_Token(_OPEN, raw, entity=entity))

    def _open(self, i: int) -> int:
        text, char = self.text, self.text[i]
        if char in _V2_SIMPLE:
            self._push(_V2_SIMPLE[char], i, char, char, char == "[")
            return i + 1
        if char == "_":
            marker = "__" if text.startswith("__", i) else "_"
            self._push("underline" if marker == "__" else "italic", i, marker, marker)
            return i + len(marker)
        if char == "`" and text.startswith("```", i):
            end, language = _pre_opener(text, i)
            self._push("pre", i, text[i:end], "```")
            self.stack[-1].reopen = f"```{language}\n"
            return end
        if char == "`":
            self._push("code", i, "`", "`")
            return i + 1
        if text.startswith("||", i):
            self._push("spoiler", i, "||", "||")
            return i + 2
        if text.startswith("![", i):
            self._push("custom emoji", i, "![", "]", is_link=True)
            return i + 2
        if char == "\n":
            self._char("\n", "\n")
            return i + 1
        if char == ">" and self.line_start:
            if self.quote is None:
                self._push("blockquote", i, ">", "")
                self.quote = self.stack[-1]
            else:
                self.tokens.append(_Token(_MARK, ">"))
            return i + 1
        raise MarkupError(
            f"character {char!r} at character {i} is reserved and must be escaped with '\\'"
        )

    def _close(self, i: int) -> int:
        text, entity = self.text, self.stack[-1]
        if text[i] == "\n":
            self._end_quote(i)
            self._char("\n", "\n")
            return i + 1
        self.stack.pop()
        if entity.name in ("link", "custom emoji"):
            if text.startswith("(", i + 1):
                end = _url_end(text, i + 1, escapes=True)
            elif entity.name == "custom emoji":
                raise MarkupError(
                    f"custom emoji at character {entity.start} needs a tg://emoji URL"
                )
            else:
                # Without a URL the link text is the URL; keep it whole on every part.
                end = i + 1
                label = "".join(t.char for t in self._since(entity))
                entity.close = f"]({_v2_escape_url(label)})"
            if end > i + 1:
                entity.close = text[i:end]
        else:
            end = i + len(entity.close)
        self.tokens.append(_Token(_CLOSE, text[i:end], entity=entity))
        return end

    def _since(self, entity: _Entity) -> list[_Token]:
        at = next(k for k in range(len(self.tokens) - 1, -1, -1) if self.tokens[k].entity is entity)
        return [t for t in self.tokens[at:] if t.kind == _TEXT]

    def _end_quote(self, i: int) -> None:
        quote, top = self.quote, self.stack[-1]
        assert quote is not None
        if top.name == "spoiler" and top is not quote and self._only_markup_since(top):
            # "||" right before the end of a quote makes it expandable rather than a spoiler.
            self.stack.pop()
            self.tokens = [t for t in self.tokens if t.entity is not top]
            quote.reopen, quote.close = "**>", "||"
            top = self.stack[-1]
        if top is not quote:
            raise MarkupError(
                f"{top.name} ({top.reopen}) opened at character {top.start} is not closed"
                f" before its blockquote ends at character {i}"
            )
        self.stack.pop()
        self.tokens.append(_Token(_CLOSE, quote.close, entity=quote))
        self.quote = None

    def _only_markup_since(self, entity: _Entity) -> bool:
        return all(t.char == "" for t in self._since(entity))


def _tokenize_markdown(text: str) -> list[_Token]:
    """Legacy Markdown as tdlib's ``parse_markdown`` reads it: no nesting, few escapes."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in _LEGACY_MARKERS:
            tokens.append(_text(text[i : i + 2], text[i + 1]))
            i += 2
            continue
        if char not in _LEGACY_MARKERS:
            tokens.append(_text(char))
            i += 1
            continue
        start, closer = i, {"[": "]"}.get(char, char)
        names = {"_": "italic", "*": "bold", "`": "code", "[": "link"}
        entity = _Entity(names[char], start, char, closer, char == "[")
        if text.startswith("```", i):
            i, language = _pre_opener(text, i)
            entity.name, entity.reopen, entity.close = "pre", f"```{language}\n", "```"
        else:
            i += 1
        tokens.append(_Token(_OPEN, text[start:i], entity=entity))
        label_from = len(tokens)
        while i < len(text) and not text.startswith(entity.close, i):
            tokens.append(_text(text[i]))
            i += 1
        if i >= len(text):
            raise MarkupError(f"unclosed {entity.name} ({char}) opened at character {start}")
        end = i + len(entity.close)
        if entity.is_link:
            if text.startswith("(", end):
                end = _url_end(text, end, escapes=False)
                entity.close = text[i:end]
            else:
                label = "".join(t.char for t in tokens[label_from:])
                entity.close = f"]({label})"
        tokens.append(_Token(_CLOSE, text[i:end], entity=entity))
        i = end
    return tokens


def _tokenize(text: str, mode: str | None) -> list[_Token]:
    if mode == "HTML":
        return _tokenize_html(text)
    if mode == "MarkdownV2":
        return _V2Parser(text).parse()
    if mode == "Markdown":
        return _tokenize_markdown(text)
    return [_text(char) for char in text]


def _escape(text: str, mode: str | None) -> str:
    if mode == "HTML":
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = {"MarkdownV2": _V2_ESCAPED, "Markdown": _LEGACY_MARKERS}.get(mode or "", frozenset())
    return "".join(f"\\{char}" if char in escaped else char for char in text)


# --- Splitting ----------------------------------------------------------------------------------


def _break_strengths(tokens: list[_Token]) -> dict[int, int]:
    """Map the token index where each run of whitespace starts to how good a cut it makes."""
    strengths: dict[int, int] = {}
    run_start, newlines = -1, 0
    for index, token in enumerate(tokens):
        if token.kind != _TEXT:
            continue
        if _is_space(token.char):
            if run_start < 0:
                run_start, newlines = index, 0
            newlines += token.char == "\n"
            strengths[run_start] = min(newlines + 1, _PARAGRAPH)
        else:
            run_start = -1
    return strengths


def _find_cut(
    tokens: list[_Token],
    pos: int,
    stack: list[_Entity],
    limit: int,
    strengths: dict[int, int],
    structured: bool,
) -> int | None:
    """Where the part starting at ``pos`` should end, or None if the rest fits."""
    width, content = 0, False
    outside: dict[int, int] = {}
    inside: dict[int, int] = {}
    link_start = -1
    links = sum(e.is_link for e in stack)  # how many links are open: a count, not a scan
    for index in range(pos, len(tokens)):
        token = tokens[index]
        if token.kind in (_OPEN, _CLOSE):
            assert token.entity is not None
            if token.entity.is_link and token.kind == _OPEN:
                if not links:
                    link_start = index if content else -1
                links += 1
            elif token.entity.is_link:
                links -= 1
            continue
        if token.kind == _MARK:
            continue
        in_link = links > 0
        if _is_space(token.char):
            if not content:
                continue  # dropped at the start of a part, so it costs nothing
            strength = strengths.get(index)
            if strength is not None:
                (inside if in_link else outside)[strength if structured else _WORD] = index
        if width + token.width > limit:
            if outside:
                return outside[max(outside)]
            if in_link and link_start >= 0:
                return link_start  # keep the link whole on the next part
            return inside[max(inside)] if inside else index
        width += token.width
        content = content or not _is_space(token.char)
    return None


def _open_after(stack: list[_Entity], tokens: list[_Token]) -> list[_Entity]:
    stack = list(stack)
    for token in tokens:
        if token.kind == _OPEN:
            assert token.entity is not None
            stack.append(token.entity)
        elif token.kind == _CLOSE:
            stack.pop()
    return stack


def _tidy(tokens: list[_Token]) -> list[_Token]:
    """Drop whitespace at the edges, entities left with no text, and stray quote markers."""
    texts = [i for i, t in enumerate(tokens) if t.kind == _TEXT and not _is_space(t.char)]
    if not texts:
        return []
    first, last = texts[0], texts[-1]
    kept = [t for i, t in enumerate(tokens) if first <= i <= last or t.kind in (_OPEN, _CLOSE)]
    keep = [True] * len(kept)
    opened: list[tuple[int, int]] = []
    count = 0
    for index, token in enumerate(kept):
        if token.kind == _TEXT:
            count += 1
        elif token.kind == _OPEN:
            opened.append((index, count))
        elif token.kind == _CLOSE:
            at, before = opened.pop()
            if count == before:
                keep[at : index + 1] = [False] * (index + 1 - at)
    return [t for t, k in zip(kept, keep, strict=True) if k]


def _render(tokens: list[_Token], mode: str | None) -> str:
    out: list[str] = []
    previous = ""
    for token in tokens:
        if not token.raw:
            continue
        markup = token.kind != _TEXT
        # "___" is ambiguous in MarkdownV2; Telegram's documented separator is a carriage return.
        if mode == "MarkdownV2" and markup and previous.endswith("_") and token.raw[0] == "_":
            out.append("\r")
        out.append(token.raw)
        previous = token.raw if markup else ""
    return "".join(out)


def _parts(tokens: list[_Token], limit: int, structured: bool) -> Iterator[list[_Token]]:
    strengths = _break_strengths(tokens)
    pos = 0
    stack: list[_Entity] = []
    while pos < len(tokens):
        cut = _find_cut(tokens, pos, stack, limit, strengths, structured)
        end = len(tokens) if cut is None else cut
        body = tokens[pos:end]
        after = _open_after(stack, body)
        reopen = [_Token(_OPEN, e.reopen, entity=e) for e in stack]
        close = [_Token(_CLOSE, e.close, entity=e) for e in reversed(after)]
        part = _tidy(reopen + body + close)
        if part:
            yield part
        pos, stack = end, after


def _check_limit(limit: int) -> None:
    if limit < 2:
        raise ValueError(
            f"limit must be at least 2 UTF-16 units so any character fits, not {limit}"
        )


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram shows for ``text`` once ``parse_mode`` markup is parsed.

    Raises MarkupError if the markup is malformed.
    """
    tokens = _tokenize(text, _normalise_mode(parse_mode))
    return "".join(t.char for t in tokens if t.kind == _TEXT)


def visible_length(text: str, parse_mode: str | None) -> int:
    """Length Telegram checks against its limits: UTF-16 code units after parsing the markup.

    Raises MarkupError if the markup is malformed.
    """
    tokens = _tokenize(text, _normalise_mode(parse_mode))
    return sum(t.width for t in tokens)


def split_text(text: str, parse_mode: str | None, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split ``text`` into ordered parts whose visible length is at most ``limit`` each.

    Cuts prefer a blank line, then a line break, then other whitespace, then fall back to the
    middle of a word; whitespace at a cut is dropped. Markup open at a cut is closed at the end of
    the part and reopened with the same attributes at the start of the next. Text that fits is
    returned unchanged as the only part; longer text made only of whitespace gives no parts.
    Raises MarkupError if the markup is malformed.
    """
    _check_limit(limit)
    mode = _normalise_mode(parse_mode)
    tokens = _tokenize(text, mode)
    if sum(t.width for t in tokens) <= limit:
        return [text]
    return [_render(part, mode) for part in _parts(tokens, limit, structured=True)]


def truncate_text(
    text: str, parse_mode: str | None, limit: int = MAX_MESSAGE_LENGTH, ellipsis: str = "…"
) -> str:
    """Shorten ``text`` to at most ``limit`` visible units, ending in ``ellipsis`` if cut.

    The cut prefers whitespace, markup open at the cut is closed, and ``ellipsis`` (plain text,
    escaped for the parse mode) follows the closed markup. Text that fits is returned unchanged.
    Raises MarkupError if the markup is malformed.
    """
    mode = _normalise_mode(parse_mode)
    tokens = _tokenize(text, mode)
    if sum(t.width for t in tokens) <= limit:
        return text
    budget = limit - _units(ellipsis)
    _check_limit(budget)
    first = next(_parts(tokens, budget, structured=False), [])
    return _render(first, mode) + _escape(ellipsis, mode)
