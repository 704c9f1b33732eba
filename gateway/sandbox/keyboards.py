"""`reply_markup`: validated like Telegram validates it.

Inline keyboards are kept and echoed in the returned Message; reply keyboards,
`remove_keyboard` and `force_reply` are accepted and recorded but, as on Telegram, never part
of a Message. `callback_data` must be 1-64 bytes (`BUTTON_DATA_INVALID`).
"""

from __future__ import annotations

from typing import Any

from gateway.constants import MAX_CALLBACK_DATA_BYTES
from gateway.sandbox.markup import check_link
from gateway.sandbox.replies import ApiError, bad_request

_INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def _button_error(reason: str) -> ApiError:
    return bad_request(f"can't parse inline keyboard button: {reason}")


def _rows(markup: dict[str, Any], field: str, of_kind: str = "") -> list[list[Any]]:
    rows = markup[field]
    if not isinstance(rows, list):
        raise bad_request(f'field "{field}" must be of type Array')
    if not all(isinstance(row, list) for row in rows):
        raise bad_request(f'field "{field}"{of_kind} must be an Array of Arrays')
    return rows


def read_inline_button(button: Any) -> dict[str, Any]:
    """One InlineKeyboardButton, checked."""
    if not isinstance(button, dict):
        raise _button_error("InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise _button_error('Field "text" must be of type String')
    actions = [name for name in _INLINE_ACTIONS if button.get(name) is not None]
    if not actions:
        raise _button_error("Text buttons are unallowed in the inline keyboard")
    if "callback_data" in actions:
        data = button["callback_data"]
        if not isinstance(data, str):
            raise _button_error('Field "callback_data" must be of type String')
        if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in actions:
        url = button["url"]
        if not isinstance(url, str) or check_link(url) is None:
            raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
    return {key: value for key, value in button.items() if value is not None}


def read_reply_markup(value: Any) -> dict[str, Any] | None:
    """The decoded `reply_markup` parameter, validated; None when absent.

    In the order of Telegram's `Client::get_reply_markup`: the reply keyboard's rows are read
    first, then the inline keyboard's; an object with none of the known keyboards (or only
    empty ones) is no markup at all, not an error.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    keyboard: list[list[Any]] = []
    if "keyboard" in value:
        keyboard = [[_reply_button(button) for button in row] for row in _rows(value, "keyboard")]
    inline: list[list[Any]] = []
    if "inline_keyboard" in value:
        rows = _rows(value, "inline_keyboard", " of the InlineKeyboardMarkup")
        inline = [[read_inline_button(button) for button in row] for row in rows]
    if keyboard:
        return {**value, "keyboard": keyboard}
    if inline:
        return {"inline_keyboard": inline}
    if any(value.get(name) is True for name in ("remove_keyboard", "hide_keyboard", "force_reply")):
        return value
    return None


def _reply_button(button: Any) -> dict[str, Any]:
    if isinstance(button, str):
        return {"text": button}
    if isinstance(button, dict) and isinstance(button.get("text"), str):
        return button
    raise bad_request('can\'t parse keyboard button: Field "text" must be of type String')


def inline_keyboard(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a stored markup a Message shows: a non-empty inline keyboard."""
    if markup and markup.get("inline_keyboard"):
        return markup
    return None


def callback_data_offered(markup: dict[str, Any] | None, data: str) -> bool:
    """Whether an inline keyboard has a button with this `callback_data`."""
    keyboard = inline_keyboard(markup)
    if keyboard is None:
        return False
    return any(
        button.get("callback_data") == data for row in keyboard["inline_keyboard"] for button in row
    )
