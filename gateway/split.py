"""Split and truncate message text so that Telegram accepts every part.

Telegram measures a message after parsing its markup, in UTF-16 code units, and refuses one over
``MAX_MESSAGE_LENGTH`` or one whose markup it cannot parse. The text is parsed into tokens by
``gateway.markup``; visible characters are never cut. Cuts land on a blank line, else a line
break, else other whitespace, else between two characters; entities open at a cut are closed at
the end of the part and opened again, with the same attributes, at the start of the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from gateway.constants import MAX_MESSAGE_LENGTH
from gateway.markup import (
    CLOSE,
    MARK,
    OPEN,
    TEXT,
    Entity,
    MarkupError,
    Token,
    escape,
    normalise_mode,
    render,
    tokenize,
    utf16_length,
    visible_length,
    visible_text,
)

__all__ = ["MarkupError", "split_text", "truncate_text", "visible_length", "visible_text"]

# How good a place to cut a run of whitespace is.
_PARAGRAPH, _LINE, _WORD = 3, 2, 1
# Non-breaking spaces join words, so they are not a place to cut.
_NON_BREAKING: Final = frozenset("\u00a0\u2007\u202f")


def _is_space(char: str) -> bool:
    # Zero-width characters (a MarkdownV2 carriage return) can be dropped at a cut like space.
    return char == "" or (char.isspace() and char not in _NON_BREAKING)


def _break_strengths(tokens: list[Token]) -> dict[int, int]:
    """Map the token index where each run of whitespace starts to how good a cut it makes."""
    strengths: dict[int, int] = {}
    run_start, newlines = -1, 0
    for index, token in enumerate(tokens):
        if token.kind != TEXT:
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
    tokens: list[Token],
    pos: int,
    stack: list[Entity],
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
        if token.kind in (OPEN, CLOSE):
            assert token.entity is not None
            if token.entity.is_link and token.kind == OPEN:
                if not links:
                    link_start = index if content else -1
                links += 1
            elif token.entity.is_link:
                links -= 1
            continue
        if token.kind == MARK:
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


def _open_after(stack: list[Entity], tokens: list[Token]) -> list[Entity]:
    stack = list(stack)
    for token in tokens:
        if token.kind == OPEN:
            assert token.entity is not None
            stack.append(token.entity)
        elif token.kind == CLOSE:
            stack.pop()
    return stack


def _tidy(tokens: list[Token]) -> list[Token]:
    """Drop whitespace at the edges, entities left with no text, and stray quote markers."""
    texts = [i for i, t in enumerate(tokens) if t.kind == TEXT and not _is_space(t.char)]
    if not texts:
        return []
    first, last = texts[0], texts[-1]
    kept = [t for i, t in enumerate(tokens) if first <= i <= last or t.kind in (OPEN, CLOSE)]
    keep = [True] * len(kept)
    opened: list[tuple[int, int]] = []
    count = 0
    for index, token in enumerate(kept):
        if token.kind == TEXT:
            count += 1
        elif token.kind == OPEN:
            opened.append((index, count))
        elif token.kind == CLOSE:
            at, before = opened.pop()
            if count == before:
                keep[at : index + 1] = [False] * (index + 1 - at)
    return [t for t, k in zip(kept, keep, strict=True) if k]


def _parts(tokens: list[Token], limit: int, structured: bool) -> Iterator[list[Token]]:
    strengths = _break_strengths(tokens)
    pos = 0
    stack: list[Entity] = []
    while pos < len(tokens):
        cut = _find_cut(tokens, pos, stack, limit, strengths, structured)
        end = len(tokens) if cut is None else cut
        body = tokens[pos:end]
        after = _open_after(stack, body)
        reopen = [Token(OPEN, e.reopen, entity=e) for e in stack]
        close = [Token(CLOSE, e.close, entity=e) for e in reversed(after)]
        part = _tidy(reopen + body + close)
        if part:
            yield part
        pos, stack = end, after


def _check_limit(limit: int) -> None:
    if limit < 2:
        raise ValueError(
            f"limit must be at least 2 UTF-16 units so any character fits, not {limit}"
        )


def split_text(text: str, parse_mode: str | None, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split ``text`` into ordered parts whose visible length is at most ``limit`` each.

    Cuts prefer a blank line, then a line break, then other whitespace, then fall back to the
    middle of a word; whitespace at a cut is dropped. Markup open at a cut is closed at the end of
    the part and reopened with the same attributes at the start of the next. Text that fits is
    returned unchanged as the only part; longer text made only of whitespace gives no parts.
    Raises MarkupError if the markup is malformed.
    """
    _check_limit(limit)
    mode = normalise_mode(parse_mode)
    tokens = tokenize(text, mode)
    if sum(t.width for t in tokens) <= limit:
        return [text]
    return [render(part, mode) for part in _parts(tokens, limit, structured=True)]


def truncate_text(
    text: str, parse_mode: str | None, limit: int = MAX_MESSAGE_LENGTH, ellipsis: str = "…"
) -> str:
    """Shorten ``text`` to at most ``limit`` visible units, ending in ``ellipsis`` if cut.

    The cut prefers whitespace, markup open at the cut is closed, and ``ellipsis`` (plain text,
    escaped for the parse mode) follows the closed markup. Text that fits is returned unchanged.
    Raises MarkupError if the markup is malformed.
    """
    mode = normalise_mode(parse_mode)
    tokens = tokenize(text, mode)
    if sum(t.width for t in tokens) <= limit:
        return text
    budget = limit - utf16_length(ellipsis)
    _check_limit(budget)
    first = next(_parts(tokens, budget, structured=False), [])
    return render(first, mode) + escape(ellipsis, mode)
