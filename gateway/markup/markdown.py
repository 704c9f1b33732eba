"""MarkdownV2 and legacy Markdown as the Bot API server reads them.

The parsers follow tdlib's ``parse_markdown_v2`` and ``parse_markdown``: MarkdownV2 nests entities
and reserves many characters; legacy Markdown has no nesting and few escapes.
"""

from __future__ import annotations

from typing import Final

from gateway.markup.tokens import CLOSE, MARK, OPEN, TEXT, Entity, MarkupError, Token, text_token

__all__ = ["LEGACY_MARKERS", "V2_ESCAPED", "tokenize_markdown", "tokenize_markdown_v2"]

# Outside code and pre every one of these is markup, or an error when unescaped; the newline only
# matters because it can end a blockquote.
_V2_RESERVED: Final = frozenset("_*[]()~`>#+-=|{}.!\n")
V2_ESCAPED: Final = frozenset("_*[]()~`>#+-=|{}.!\\")
LEGACY_MARKERS: Final = frozenset("_*`[")
_V2_SIMPLE: Final = {"*": "bold", "~": "strikethrough", "[": "link"}


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


def _v2_ends(entity: Entity, text: str, i: int) -> bool:
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
        self.tokens: list[Token] = []
        self.stack: list[Entity] = []
        self.quote: Entity | None = None
        self.line_start = True

    def parse(self) -> list[Token]:
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
        self.tokens.append(text_token(raw, "" if char == "\r" else char))
        if char != "\r":
            self.line_start = char == "\n"

    def _ends_here(self, i: int) -> bool:
        if self.quote is not None and self.text[i] == "\n" and not self._quote_continues(i):
            return True
        return _v2_ends(self.stack[-1], self.text, i)

    def _quote_continues(self, i: int) -> bool:
        return self.text.startswith(">", i + 1)

    def _push(self, name: str, start: int, raw: str, close: str, is_link: bool = False) -> None:
        entity = Entity(name, start, raw, close, is_link)
        self.stack.append(entity)
        self.tokens.append(Token(OPEN, raw, entity=entity))

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
                self.tokens.append(Token(MARK, ">"))
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
        self.tokens.append(Token(CLOSE, text[i:end], entity=entity))
        return end

    def _since(self, entity: Entity) -> list[Token]:
        at = next(k for k in range(len(self.tokens) - 1, -1, -1) if self.tokens[k].entity is entity)
        return [t for t in self.tokens[at:] if t.kind == TEXT]

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
        self.tokens.append(Token(CLOSE, quote.close, entity=quote))
        self.quote = None

    def _only_markup_since(self, entity: Entity) -> bool:
        return all(t.char == "" for t in self._since(entity))


def tokenize_markdown(text: str) -> list[Token]:
    """Legacy Markdown as tdlib's ``parse_markdown`` reads it: no nesting, few escapes."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in LEGACY_MARKERS:
            tokens.append(text_token(text[i : i + 2], text[i + 1]))
            i += 2
            continue
        if char not in LEGACY_MARKERS:
            tokens.append(text_token(char))
            i += 1
            continue
        start, closer = i, {"[": "]"}.get(char, char)
        names = {"_": "italic", "*": "bold", "`": "code", "[": "link"}
        entity = Entity(names[char], start, char, closer, char == "[")
        if text.startswith("```", i):
            i, language = _pre_opener(text, i)
            entity.name, entity.reopen, entity.close = "pre", f"```{language}\n", "```"
        else:
            i += 1
        tokens.append(Token(OPEN, text[start:i], entity=entity))
        label_from = len(tokens)
        while i < len(text) and not text.startswith(entity.close, i):
            tokens.append(text_token(text[i]))
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
        tokens.append(Token(CLOSE, text[i:end], entity=entity))
        i = end
    return tokens


def tokenize_markdown_v2(text: str) -> list[Token]:
    """Parse MarkdownV2; raises MarkupError if Telegram would refuse it."""
    return _V2Parser(text).parse()
