"""Answers checked line by line against Telegram's own server (tdlib/telegram-bot-api, Client.cpp).

Each case is one the sandbox answered differently before: how a missing or odd parameter is
read (`get_message_id`, `check_chat`, `get_bot_commands`, `get_location`, `get_reply_markup`)
and in which order a method checks its parameters.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandbox_helpers import USER, SandboxClient, running_sandbox

from gateway.sandbox import SandboxSettings
from gateway.sandbox.botapi import METHODS

UNLIMITED = SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=1000)


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        await client.say("/start")
        yield client


async def description(box: SandboxClient, method: str, **params: object) -> str:
    status, body = await box.api(method, **params)
    assert status == 400, body
    return str(body["description"])


async def test_a_chat_id_is_read_by_its_leading_digits(box: SandboxClient) -> None:
    # td::to_integer: "1111abc" is chat 1111; "abc" is chat 0, never found
    sent = await box.result("sendMessage", chat_id=f"{USER}abc", text="hi")
    assert sent["chat"]["id"] == USER
    assert await description(box, "sendMessage", chat_id="abc", text="hi") == (
        "Bad Request: chat not found"
    )


async def test_delete_message_checks_both_ids_before_looking(box: SandboxClient) -> None:
    sent = await box.result("sendMessage", chat_id=USER, text="hi")
    assert await description(box, "deleteMessage", message_id=sent["message_id"]) == (
        "Bad Request: chat identifier is not specified"
    )
    for message_id in (None, 0, -3, "abc"):
        params = {} if message_id is None else {"message_id": message_id}
        assert await description(box, "deleteMessage", chat_id=999, **params) == (
            "Bad Request: message identifier is not specified"
        )
    assert await description(box, "deleteMessage", chat_id=USER, message_id=999) == (
        "Bad Request: message to delete not found"
    )
    assert await box.result("deleteMessage", chat_id=USER, message_id=sent["message_id"]) is True


async def test_set_my_commands_without_commands_clears_them(box: SandboxClient) -> None:
    commands = [{"command": "start", "description": "Start"}]
    assert await box.result("setMyCommands", commands=commands) is True
    assert await box.result("getMyCommands") == commands
    assert await box.result("setMyCommands") is True
    assert await box.result("getMyCommands") == []
    cases = [
        ({"a": 1}, "Bad Request: expected an Array of BotCommand"),
        ([1], "Bad Request: can't parse BotCommand: expected an Object"),
        (
            [{"command": "a"}],
            "Bad Request: can't parse BotCommand: Can't find field \"description\"",
        ),
        (
            [{"command": ["a"], "description": "A"}],
            'Bad Request: can\'t parse BotCommand: Field "command" must be of type String',
        ),
    ]
    for value, expected in cases:
        assert await description(box, "setMyCommands", commands=value) == expected


async def test_missing_ids_read_as_telegrams_server_reads_them(box: SandboxClient) -> None:
    # answerCallbackQuery without an id asks about query 0, which is never valid
    assert await description(box, "answerCallbackQuery") == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    )
    assert await description(box, "getFile") == "Bad Request: file_id not specified"
    assert await description(box, "sendLocation", chat_id=USER) == (
        "Bad Request: latitude is empty"
    )
    assert await description(box, "sendLocation", chat_id=USER, latitude=1) == (
        "Bad Request: longitude is empty"
    )


async def test_a_markup_without_a_keyboard_is_no_markup(box: SandboxClient) -> None:
    for markup in ({"foo": 1}, {"inline_keyboard": []}, {"keyboard": [], "selective": True}):
        sent = await box.result("sendMessage", chat_id=USER, text="hi", reply_markup=markup)
        assert "reply_markup" not in sent
    # the reply keyboard's rows are read before the inline keyboard's
    markup = {"keyboard": [{"text": "a"}], "inline_keyboard": "x"}
    assert await description(box, "sendMessage", chat_id=USER, text="hi", reply_markup=markup) == (
        'Bad Request: field "keyboard" must be an Array of Arrays'
    )


async def test_a_caption_over_32_kib_is_refused_before_parsing(box: SandboxClient) -> None:
    sent = await box.result("sendMessage", chat_id=USER, text="x")
    params = {"chat_id": USER, "message_id": sent["message_id"]}
    assert await description(box, "editMessageText", text="x" * 32769, **params) == (
        "Bad Request: text is too long"
    )
    assert await description(box, "editMessageCaption", caption="x" * 32769, **params) == (
        "Bad Request: text is too long"
    )


async def test_input_media_errors_are_get_input_medias(box: SandboxClient) -> None:
    album = {"chat_id": USER}
    assert await description(box, "sendMediaGroup", **album) == (
        'Bad Request: parameter "media" is required'
    )
    assert await description(box, "sendMediaGroup", **album, media={"type": "photo"}) == (
        "Bad Request: expected an Array of InputMedia"
    )
    photo = {"type": "photo", "media": "AgACAgIAAx"}
    cases = [
        (1, "expected an Object"),
        ({"media": "AgACAgIAAx"}, 'Can\'t find field "type"'),
        ({"type": 1, "media": "AgACAgIAAx"}, 'Field "type" must be of type String'),
        ({"type": "photo"}, "media not found"),
        ({"type": "voice", "media": "AwACAgIAAx"}, 'type "voice" is unsupported'),
    ]
    for item, reason in cases:
        answer = await description(box, "sendMediaGroup", **album, media=[photo, item])
        assert answer == f"Bad Request: can't parse InputMedia: {reason}"
    sent = await box.result("sendMessage", chat_id=USER, text="x")
    edit = {"chat_id": USER, "message_id": sent["message_id"]}
    assert await description(box, "editMessageMedia", **edit, media="{x") == (
        "Bad Request: can't parse input media JSON object"
    )
    assert await description(box, "editMessageMedia", **edit, media={"type": "voice"}) == (
        "Bad Request: can't parse InputMedia: media not found"
    )


def test_the_docs_list_exactly_the_emulated_methods() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "sandbox.md").read_text()
    section = docs.split("\n## Bot API methods\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"\*\*`(\w+)`\*\*", section))
    assert documented == {name for name, _handler in METHODS.values()}
