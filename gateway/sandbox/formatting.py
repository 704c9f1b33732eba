"""From a send method's `text`, `parse_mode` and `entities` to what Telegram stores.

`parse_mode` wins over `entities` (as in Telegram's server); the result is normalised (see
`gateway.sandbox.markup`) and checked against the 4096-character limit, counted in UTF-16 code
units after entity parsing; before parsing, the source may not exceed 32 KiB of UTF-8.
"""

from __future__ import annotations

from typing import Any

from gateway.constants import MAX_MESSAGE_LENGTH, MAX_TEXT_SOURCE_BYTES
from gateway.sandbox.html import parse_html
from gateway.sandbox.markdown import parse_markdown, parse_markdown_v2
from gateway.sandbox.markup import (
    EntityParseError,
    Parsed,
    explicit_entities,
    normalize,
    utf16_len,
)
from gateway.sandbox.replies import bad_request

_PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


def format_text(
    text: str,
    parse_mode: str,
    entities: Any,
    *,
    bot_commands: bool,
    max_length: int = MAX_MESSAGE_LENGTH,
) -> Parsed:
    """Parse and normalise a message text, raising Telegram's 400s.

    `entities` is the decoded `entities` parameter (ignored when a parse_mode is given);
    `bot_commands` says whether `/command`s are detected (see `markup.normalize`).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_SOURCE_BYTES:
        raise bad_request("text is too long")
    mode = parse_mode.strip().lower()
    try:
        if mode and mode != "none":
            parser = _PARSERS.get(mode)
            if parser is None:
                raise bad_request("unsupported parse_mode")
            parsed = parser(text)
        else:
            parsed = Parsed(text, explicit_entities(entities))
    except EntityParseError as exc:
        raise bad_request(f"can't parse entities: {exc}") from None
    result = normalize(parsed, bot_commands=bot_commands)
    if not result.text:
        raise bad_request("message text is empty")
    if utf16_len(result.text) > max_length:
        raise bad_request("message is too long")
    return result
