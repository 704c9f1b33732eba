"""`parse_mode=MarkdownV2` and legacy `Markdown`, parsed the way Telegram's TDLib parses them.

MarkdownV2: `*bold*`, `_italic_`, `__underline__`, `~strike~`, `||spoiler||`, `` `code` ``,
```` ```lang pre``` ````, `[text](url)`, `![emoji](tg://emoji?id=N)`, `>` block quotes (and
`**>` ... `||` expandable ones). Every character of ``_*[]()~`>#+-=|{}.!`` outside an entity
marker must be escaped with a backslash, else `Character 'c' is reserved ...`.

Markdown (legacy): `*bold*`, `_italic_`, `` `code` ``, ```` ```pre``` ````, `[text](url)`;
nothing can be nested and an unfinished marker is
`Can't find end of the entity starting at byte offset N`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.sandbox.markup import EntityParseError, Parsed, byte_offset, check_link

_RESERVED = "_*[]()~`>#+-=|{}.!"
_SPACE = " \t\r\n\0\v\f"
#: TDLib's names of entity types, as its error messages print them.
_TD_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_CODE_KINDS = frozenset({"code", "pre", "pre_code"})
_EMOJI_URL = re.compile(r"tg://emoji\?id=([1-9]\d{0,19})$")


@dataclass
class _Open:
    kind: str
    argument: str
    offset: int
    start: int  # index of the marker in the input
    result_pos: int


def _reserved_error(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


class _V2:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.utf16 = 0
        self.nested: list[_Open] = []
        self.entities: list[dict[str, Any]] = []
        self.quote: tuple[int, bool] | None = None
        self.quote_end = 0

    def at(self, k: int) -> str:
        return self.text[k] if k < len(self.text) else "\0"

    def emit(self, char: str) -> None:
        self.out.append(char)
        self.utf16 += 2 if ord(char) > 0xFFFF else 1

    def close_quote(self, end: int) -> None:
        assert self.quote is not None
        offset, expandable = self.quote
        if end > offset:
            kind = "expandable_blockquote" if expandable else "blockquote"
            self.entities.append({"type": kind, "offset": offset, "length": end - offset})
        self.quote = None

    def parse(self) -> Parsed:
        text, n, i = self.text, len(self.text), 0
        while i < n:
            c = text[i]
            in_code = bool(self.nested) and self.nested[-1].kind in _CODE_KINDS
            if not in_code and (i == 0 or text[i - 1] == "\n"):
                if c == ">" or text.startswith("**>", i):
                    if self.quote is None:
                        self.quote = (self.utf16, c == "*")
                    i += 1 if c == ">" else 3
                    continue
                if self.quote is not None and i > 0:
                    self.close_quote(self.quote_end)
            if c == "\n" and self.quote is not None:
                self.quote_end = self.utf16
            if (
                self.quote is not None
                and self.quote[1]
                and text.startswith("||", i)
                and self.at(i + 2) in "\n\0"
                and not (self.nested and self.nested[-1].kind == "spoiler")
            ):
                self.close_quote(self.utf16)
                i += 2
                continue
            if c == "\\" and 0 < ord(self.at(i + 1)) <= 126:
                self.emit(text[i + 1])
                i += 2
                continue
            reserved = "`" if in_code else _RESERVED
            if c not in reserved:
                self.emit(c)
                i += 1
                continue
            ending = bool(self.nested) and self.is_end(c, i)
            i = self.end_entity(i) if ending else self.begin_entity(c, i)
        if self.quote is not None:
            self.close_quote(self.utf16)
        if self.nested:
            top = self.nested[-1]
            raise EntityParseError(
                f"Can't find end of {_TD_NAMES[top.kind]} entity at byte offset "
                f"{byte_offset(text, top.start)}"
            )
        return Parsed("".join(self.out), self.entities)

    def is_end(self, c: str, i: int) -> bool:
        kind = self.nested[-1].kind
        nxt = self.at(i + 1)
        return {
            "bold": c == "*",
            "italic": c == "_" and nxt != "_",
            "code": c == "`",
            "pre": self.text.startswith("```", i),
            "pre_code": self.text.startswith("```", i),
            "text_link": c == "]",
            "custom_emoji": c == "]",
            "underline": c == "_" and nxt == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and nxt == "|",
        }[kind]

    def begin_entity(self, c: str, i: int) -> int:
        text, start, argument = self.text, i, ""
        nxt = self.at(i + 1)
        if c == "_":
            kind, i = ("underline", i + 2) if nxt == "_" else ("italic", i + 1)
        elif c == "*":
            kind, i = "bold", i + 1
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and nxt == "|":
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and nxt == "[":
            kind, i = "custom_emoji", i + 2
        elif c == "`" and text.startswith("```", i):
            i += 3
            kind = "pre"
            language_end = i
            while self.at(language_end) not in _SPACE and self.at(language_end) != "`":
                language_end += 1
            if i != language_end and language_end < len(text) and text[language_end] != "`":
                kind, argument, i = "pre_code", text[i:language_end], language_end
            if self.at(i) in "\r\n":
                pair = self.at(i + 1) in "\r\n" and self.at(i) != self.at(i + 1)
                i += 2 if pair else 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise _reserved_error(c)
        self.nested.append(_Open(kind, argument, self.utf16, start, len(self.out)))
        return i

    def end_entity(self, i: int) -> int:
        top = self.nested.pop()
        skip = self.utf16 == top.offset
        entity: dict[str, Any] = {"type": top.kind}
        if top.kind in ("bold", "italic", "code", "strikethrough"):
            i += 1
        elif top.kind in ("underline", "spoiler"):
            i += 2
        elif top.kind in ("pre", "pre_code"):
            i += 3
            entity["type"] = "pre"
            if top.argument:
                entity["language"] = top.argument
        elif top.kind == "text_link":
            if self.at(i + 1) != "(":
                url = "".join(self.out[top.result_pos :])
                i += 1
            else:
                url, i = self.read_url(i + 2, "a URL")
            link = check_link(url)
            if link is None:
                skip = True
            entity["url"] = link
        else:  # custom_emoji
            if self.at(i + 1) != "(":
                raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
            url, i = self.read_url(i + 2, "a custom emoji URL")
            match = _EMOJI_URL.match(url)
            if match is None:
                raise EntityParseError("Invalid custom emoji URL specified")
            entity["custom_emoji_id"] = match.group(1)
        if not skip:
            entity["offset"] = top.offset
            entity["length"] = self.utf16 - top.offset
            self.entities.append(entity)
        return i

    def read_url(self, i: int, what: str) -> tuple[str, int]:
        text, begin, chars = self.text, i, []
        while i < len(text) and text[i] != ")":
            if text[i] == "\\" and self.at(i + 1) in ")\\":
                chars.append(text[i + 1])
                i += 2
                continue
            chars.append(text[i])
            i += 1
        if i >= len(text):
            raise EntityParseError(
                f"Can't find end of {what} at byte offset {byte_offset(text, begin)}"
            )
        return "".join(chars), i + 1


def parse_markdown_v2(text: str) -> Parsed:
    """Turn MarkdownV2-marked text into plain text and Bot API entities."""
    return _V2(text).parse()


def parse_markdown(text: str) -> Parsed:
    """Turn legacy-Markdown-marked text into plain text and Bot API entities."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    utf16, i, n = 0, 0, len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    while i < n:
        c = text[i]
        if c == "\\" and at(i + 1) in "_*`[":
            out.append(text[i + 1])
            utf16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            utf16 += 2 if ord(c) > 0xFFFF else 1
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        i += 1
        is_pre, language = False, ""
        if c == "`" and at(i) == "`" and at(i + 1) == "`":
            i += 2
            is_pre = True
            language_end = i
            while at(language_end) not in _SPACE and at(language_end) != "`":
                language_end += 1
            if i != language_end and language_end < n and text[language_end] != "`":
                language, i = text[i:language_end], language_end
            if at(i) in "\r\n":
                i += 2 if at(i + 1) in "\r\n" and at(i) != at(i + 1) else 1
        offset = utf16
        while i < n and (text[i] != end_char or (is_pre and not text.startswith("```", i))):
            out.append(text[i])
            utf16 += 2 if ord(text[i]) > 0xFFFF else 1
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
            )
        entity: dict[str, Any] = {"offset": offset, "length": utf16 - offset}
        if c == "[":
            if at(i + 1) == "(":
                close = text.find(")", i + 2)
                close = n if close == -1 else close
                url, i = text[i + 2 : close], close
            else:
                url = text[begin + 1 : i]
            link = check_link(url)
            entity.update(type="text_link", url=link)
        elif c == "`" and is_pre:
            entity.update({"type": "pre", "language": language} if language else {"type": "pre"})
        elif c == "`":
            entity["type"] = "code"
        else:
            entity["type"] = "bold" if c == "*" else "italic"
        if entity["length"] > 0 and entity.get("url", "") is not None:
            entities.append(entity)
        i += 3 if is_pre else 1
    return Parsed("".join(out), entities)
