"""What the gateway reads from an update aiogram refuses (the end-to-end cases are in
tests/test_webhook_intake.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiogram.types import Update
from pydantic import ValidationError

from gateway import rawupdate

USER = {"id": 1111, "is_bot": False, "first_name": "Ann", "username": "ann", "extra": [1]}


def failure(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Update.model_validate(data)
    return rawupdate.first_failure(caught.value)


def test_the_first_failing_field_names_the_path_not_the_value() -> None:
    update = {"update_id": 1, "message": {"message_id": "secret words", "date": 1}}
    where = failure(update)
    assert where.startswith("message.")
    assert "secret words" not in where
    assert rawupdate.first_failure(RecursionError()) == "(update): nested too deeply"


def test_a_message_keeps_sender_chat_text_and_the_message_replied_to() -> None:
    raw = {
        "update_id": 3,
        "message": {
            "message_id": 10,
            "date": 1_700_000_000,
            "chat": {"id": -100123, "title": "ops", "extra": {}},
            "from": USER,
            "text": "/deploy api",
            "entities": [{"type": "bot_command"}],
            "reply_to_message": {
                "message_id": 9,
                "chat": {"id": -100123, "type": "supergroup"},
                "reply_to_message": {"message_id": 8, "chat": {"id": -100123}},
            },
        },
    }
    usable = rawupdate.reduced(raw)
    assert usable == {
        "update_id": 3,
        "message": {
            "message_id": 10,
            "date": 1_700_000_000,
            "chat": {"id": -100123, "type": "supergroup", "title": "ops"},
            "from": {"id": 1111, "is_bot": False, "first_name": "Ann", "username": "ann"},
            "text": "/deploy api",
            "reply_to_message": {
                "message_id": 9,
                "date": 0,
                "chat": {"id": -100123, "type": "supergroup"},
            },
        },
    }
    update = Update.model_validate(usable)
    assert update.message is not None and update.message.text == "/deploy api"
    assert rawupdate.describe(usable) == (
        "handled as a reduced message from user 1111 in chat -100123"
    )


def test_a_tap_keeps_its_id_sender_and_data() -> None:
    raw = {"update_id": 4, "callback_query": {"id": "77", "from": USER, "data": "q:x:0.0"}}
    usable = rawupdate.reduced(raw)
    assert usable is not None
    query = Update.model_validate(usable).callback_query
    assert query is not None and query.data == "q:x:0.0" and query.from_user.id == 1111


@pytest.mark.parametrize(
    "raw",
    [
        {"update_id": 5, "message": "text"},
        {"update_id": 5, "message": {"message_id": 1}},
        {"update_id": 5, "message": {"message_id": True, "chat": {"id": 1}}},
        {"update_id": 5, "message": {"message_id": 1, "chat": {"id": "1"}}},
        {"update_id": 5, "callback_query": {"id": "1", "from": {"id": "x"}}},
        {"update_id": 5, "poll": {"id": "1"}},
        {"update_id": "5", "message": {"message_id": 1, "chat": {"id": 1}}},
    ],
)
def test_nothing_usable_is_none(raw: dict[str, Any]) -> None:
    assert rawupdate.reduced(raw) is None
    assert rawupdate.describe(None).startswith("not handled")


def test_update_id_is_a_64_bit_integer() -> None:
    assert rawupdate.update_id({"update_id": 2**63 - 1}) == 2**63 - 1
    for value in (2**63, True, 1.0, "1", None):
        assert rawupdate.update_id({"update_id": value}) is None
    assert rawupdate.update_id([1]) is None


def test_the_digest_ignores_spacing_and_key_order() -> None:
    a = {"update_id": 1, "message": {"text": "hi", "message_id": 2}}
    b = {"message": {"message_id": 2, "text": "hi"}, "update_id": 1}
    body_a, body_b = json.dumps(a).encode(), json.dumps(b, indent=2).encode()
    assert rawupdate.digest(a, body_a) == rawupdate.digest(b, body_b)
    changed = {"update_id": 1, "message": {"text": "hi!", "message_id": 2}}
    assert rawupdate.digest(changed, b"") != rawupdate.digest(a, body_a)
