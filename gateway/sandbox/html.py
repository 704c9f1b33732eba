"""`parse_mode=HTML`, parsed the way Telegram's TDLib parses it.

Supported tags: b/strong, i/em, u/ins, s/strike/del, span class="tg-spoiler", tg-spoiler,
a href, code (class="language-x" inside pre), pre, blockquote (expandable), tg-emoji emoji-id.
Character references: `&lt; &gt; &amp; &quot;` and numeric ones; any other `&` stays literal.
Errors carry Telegram's texts and the byte offset of the offending tag in the UTF-8 input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.sandbox.markup import EntityParseError, Parsed, byte_offset, check_link

_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji"}
    | {"span", "pre", "code", "blockquote"}
)
_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_SPACE = " \t\r\n\0\v\f"
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


@dataclass
class _Open:
    tag: str
    argument: str
    offset: int  # UTF-16 offset in the result
    result_pos: int  # index in the result's characters


def decode_reference(text: str, i: int) -> tuple[str, int] | None:
    """Decode the character reference at `text[i] == "&"`: (character, index after it)."""
    end = text.find(";", i + 1, i + 12)
    if end == -1:
        return None
    name = text[i + 1 : end]
    if name in _NAMED:
        return _NAMED[name], end + 1
    if not name.startswith("#") or len(name) < 2:
        return None
    digits, base = (name[2:], 16) if name[1] in "xX" else (name[1:], 10)
    try:
        code = int(digits, base)
    except ValueError:
        return None
    if not digits.isalnum() or code <= 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), end + 1


def parse_html(text: str) -> Parsed:
    """Turn HTML-marked text into plain text and Bot API entities."""
    out: list[str] = []
    utf16 = 0
    nested: list[_Open] = []
    entities: list[dict[str, Any]] = []
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    def err(message: str, pos: int) -> EntityParseError:
        return EntityParseError(f"{message} at byte offset {byte_offset(text, pos)}")

    i = 0
    while i < n:
        c = text[i]
        if c != "<":
            if c == "&" and (decoded := decode_reference(text, i)) is not None:
                c, i = decoded[0], decoded[1]
            else:
                i += 1
            out.append(c)
            utf16 += 2 if ord(c) > 0xFFFF else 1
            continue
        begin = i
        if at(i + 1) != "/":
            i += 1
            name_begin = i
            while at(i) not in _SPACE and at(i) != ">":
                i += 1
            if i >= n:
                raise err("Unclosed start tag", begin)
            tag = text[name_begin:i].lower()
            if tag not in _TAGS:
                raise err(f'Unsupported start tag "{tag}"', begin)
            argument = ""
            while at(i) != ">":
                while i < n and text[i] in _SPACE:
                    i += 1
                if i >= n:
                    raise err("Unclosed start tag", begin)
                if text[i] == ">":
                    break
                attr_begin = i
                while at(i) not in _SPACE and at(i) not in "=>/\"'":
                    i += 1
                attribute = text[attr_begin:i].lower()
                if not attribute:
                    raise err(f'Empty attribute name in the tag "{tag}"', begin)
                while i < n and text[i] in _SPACE:
                    i += 1
                if at(i) != "=":
                    if tag == "blockquote" and attribute == "expandable":
                        argument = "1"
                        continue
                    raise err(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}"',
                        begin,
                    )
                i += 1
                while i < n and text[i] in _SPACE:
                    i += 1
                if i >= n:
                    raise err("Unclosed start tag", begin)
                value, i = _attribute_value(text, i, begin, err)
                argument = _argument(tag, attribute, value, argument)
            if tag == "span" and argument != "spoiler":
                raise err('Tag "span" must have class "tg-spoiler"', begin)
            nested.append(_Open(tag, argument, utf16, len(out)))
            i += 1
            continue
        # an end tag
        if not nested:
            raise err("Unexpected end tag", begin)
        i += 2
        name_begin = i
        while at(i) not in _SPACE and at(i) != ">":
            i += 1
        end_tag = text[name_begin:i].lower()
        while i < n and text[i] in _SPACE:
            i += 1
        if at(i) != ">":
            raise err("Unclosed end tag", begin)
        i += 1
        opened = nested.pop()
        if end_tag and end_tag != opened.tag:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {byte_offset(text, begin)}, "
                f'expected "</{opened.tag}>", found "</{end_tag}>"'
            )
        if utf16 > opened.offset:
            _close(opened, utf16 - opened.offset, "".join(out[opened.result_pos :]), entities)
    if nested:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1].tag}"')
    return Parsed("".join(out), entities)


def _attribute_value(text: str, i: int, begin: int, err: Any) -> tuple[str, int]:
    n = len(text)
    if text[i] not in "'\"":
        token_begin = i
        while i < n and (text[i].isalnum() or text[i] in ".-"):
            i += 1
        if i < n and text[i] not in _SPACE and text[i] != ">":
            raise err("Unexpected end of name token", token_begin)
        return text[token_begin:i].lower(), i
    quote = text[i]
    i += 1
    chars: list[str] = []
    while i < n and text[i] != quote:
        if text[i] == "&" and (decoded := decode_reference(text, i)) is not None:
            chars.append(decoded[0])
            i = decoded[1]
            continue
        chars.append(text[i])
        i += 1
    if i >= n:
        raise err("Unclosed start tag", begin)
    return "".join(chars), i + 1


def _argument(tag: str, attribute: str, value: str, current: str) -> str:
    if tag == "a" and attribute == "href":
        return value
    if tag == "code" and attribute == "class" and value.startswith("language-"):
        return value[len("language-") :]
    if tag == "span" and attribute == "class" and value.startswith("tg-"):
        return value[len("tg-") :]
    if tag == "tg-emoji" and attribute == "emoji-id":
        return value
    if tag == "blockquote" and attribute == "expandable":
        return "1"
    return current


def _close(opened: _Open, length: int, inner: str, entities: list[dict[str, Any]]) -> None:
    offset, tag, argument = opened.offset, opened.tag, opened.argument
    entity: dict[str, Any] = {"offset": offset, "length": length}
    if tag in _SIMPLE:
        entity["type"] = _SIMPLE[tag]
    elif tag == "a":
        url = check_link(argument or inner)
        if url is None:
            return
        entity.update(type="text_link", url=url)
    elif tag == "tg-emoji":
        if not argument.isdigit() or int(argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entity.update(type="custom_emoji", custom_emoji_id=argument)
    elif tag == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and last["offset"] == offset
            and last["length"] == length
            and last.get("_language")
        ):
            entities.pop()
            entity.update(type="pre", language=last["_language"])
        else:
            entity["type"] = "pre"
    elif tag == "code":
        entity["type"] = "code"
        if argument:
            entity["_language"] = argument
    else:  # blockquote
        entity["type"] = "expandable_blockquote" if argument else "blockquote"
    entities.append(entity)
