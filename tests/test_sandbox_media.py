"""The sandbox's media methods, driven by an unchanged aiogram client and by raw requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InputMediaDocument, InputMediaPhoto

from gateway.sandbox import SandboxSettings
from tests.media_helpers import file_server, png
from tests.sandbox_helpers import BOT_ID, TOKEN, USER, SandboxClient, aiogram_bot, running_sandbox

UNLIMITED = SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=1000)
FORUM = -1001234567890


@pytest.fixture
async def box() -> AsyncIterator[SandboxClient]:
    async with running_sandbox(UNLIMITED) as client:
        await client.control("POST", "chats", {"chat_id": USER, "bot_id": BOT_ID})
        yield client


async def test_a_photo_has_telegrams_sizes_and_downloads_through_get_file(
    box: SandboxClient,
) -> None:
    image = png(2000, 1000)
    async with aiogram_bot(box.base) as bot:
        sent = await bot.send_photo(
            USER, BufferedInputFile(image, "a.png"), caption="<b>cpu</b>", parse_mode="HTML"
        )
        assert sent.photo is not None
        sides = [(p.width, p.height) for p in sent.photo]
        assert sides == [(90, 45), (320, 160), (800, 400), (1280, 640), (2000, 1000)]
        assert sent.caption == "cpu" and sent.caption_entities
        assert len({p.file_unique_id for p in sent.photo}) == 5
        file = await bot.get_file(sent.photo[-1].file_id)
        assert file.file_size == len(image)
        async with box.http.get(f"{box.base}/file/bot{TOKEN}/{file.file_path}") as resp:
            assert resp.status == 200
            assert await resp.read() == image
        again = await bot.send_photo(USER, sent.photo[-1].file_id)  # reuse: no upload
        assert again.photo is not None
        assert again.photo[-1].file_unique_id == sent.photo[-1].file_unique_id
    files = await box.control("GET", "files", bot_id=BOT_ID)
    assert files["uploads"] == 1
    record = (await box.sent(USER))[0]
    assert record["caption"] == "cpu"
    assert record["media"][0]["kind"] == "photo" and record["media"][0]["file_size"] == len(image)
    async with box.http.get(f"{box.base}/sandbox/files/{record['media'][0]['file_id']}") as resp:
        assert await resp.read() == image


@pytest.mark.parametrize("kind", ["document", "video", "audio", "voice", "animation"])
async def test_each_kind_of_file(box: SandboxClient, kind: str) -> None:
    data = png(10, 10) if kind in ("video", "animation") else b"%PDF-1.4 report\n" * 10
    form = aiohttp.FormData()
    form.add_field("chat_id", str(USER))
    form.add_field(kind, data, filename=f"f.{kind}", content_type="application/x-test")
    async with box.http.post(f"{box.base}/bot{TOKEN}/send{kind.title()}", data=form) as resp:
        answer = await resp.json()
    assert answer["ok"], answer
    described = answer["result"][kind]
    assert described["file_size"] == len(data) and described["file_name"] == f"f.{kind}"
    assert described["mime_type"] == "application/x-test"


async def test_files_telegram_refuses(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
            await bot.send_photo(USER, BufferedInputFile(b"not an image", "x.png"))
        doc = await bot.send_document(USER, BufferedInputFile(b"text", "x.txt"))
        assert doc.document is not None
        with pytest.raises(TelegramBadRequest, match="can't use file of type Document as Photo"):
            await bot.send_photo(USER, doc.document.file_id)
        with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
            await bot.send_photo(USER, "AgACnonsense")
        with pytest.raises(TelegramBadRequest, match="message caption is too long"):
            await bot.send_document(USER, doc.document.file_id, caption="x" * 1025)
    status, answer = await box.api("sendPhoto", chat_id=USER)
    assert (
        status == 400 and answer["description"] == "Bad Request: there is no photo in the request"
    )


async def test_another_bots_file_id_is_wrong(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        doc = await bot.send_document(USER, BufferedInputFile(b"text", "x.txt"))
    assert doc.document is not None
    other = "777:another-token"
    await box.control("POST", "chats", {"chat_id": USER, "bot_id": 777})
    status, answer = await box.api(
        "sendDocument", token=other, chat_id=USER, document=doc.document.file_id
    )
    assert status == 400 and "wrong file identifier" in answer["description"]


async def test_a_photo_by_url_is_fetched(box: SandboxClient) -> None:
    async with file_server() as server:
        server.files["/panel.png"] = (png(300, 200), "image/png")
        server.files["/page.html"] = (b"<html></html>", "text/html")
        result = await box.result("sendPhoto", chat_id=USER, photo=f"{server.url}/panel.png")
        assert result["photo"][-1]["width"] == 300
        _status, answer = await box.api("sendPhoto", chat_id=USER, photo=f"{server.url}/page.html")
        assert answer["description"] == "Bad Request: wrong type of the web page content"
        _status, answer = await box.api("sendPhoto", chat_id=USER, photo=f"{server.url}/gone.png")
        assert answer["description"] == "Bad Request: failed to get HTTP URL content"


async def test_albums(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        album = await bot.send_media_group(
            USER,
            [
                InputMediaPhoto(media=BufferedInputFile(png(salt=1), "1.png"), caption="two"),
                InputMediaPhoto(media=BufferedInputFile(png(salt=2), "2.png")),
            ],
        )
        assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
        assert album[0].caption == "two"
        with pytest.raises(TelegramBadRequest, match="document can't be mixed"):
            await bot.send_media_group(
                USER,
                [
                    InputMediaPhoto(media=BufferedInputFile(png(salt=3), "3.png")),
                    InputMediaDocument(media=BufferedInputFile(b"doc", "d.txt")),
                ],
            )
    status, _answer = await box.api(
        "sendMediaGroup", chat_id=USER, media=[{"type": "photo", "media": "x"}]
    )
    assert status == 400


async def test_forum_topics_and_protected_content(box: SandboxClient) -> None:
    await box.control(
        "POST",
        "chats",
        {"chat_id": FORUM, "type": "supergroup", "is_forum": True, "bot_id": BOT_ID},
    )
    topic = await box.result("createForumTopic", chat_id=FORUM, name="Alerts")
    thread = topic["message_thread_id"]
    sent = await box.result(
        "sendMessage",
        chat_id=FORUM,
        text="disk full",
        message_thread_id=thread,
        protect_content=True,
    )
    assert sent["message_thread_id"] == thread and sent["is_topic_message"] is True
    assert sent["has_protected_content"] is True
    status, answer = await box.api(
        "sendMessage", chat_id=FORUM, text="x", message_thread_id=thread + 100
    )
    assert status == 400 and answer["description"] == "Bad Request: message thread not found"
    status, answer = await box.api("createForumTopic", chat_id=USER, name="x")
    assert answer["description"] == "Bad Request: the chat is not a forum"
    said = await box.say("/help", chat_id=FORUM, message_thread_id=thread)
    assert said["message_id"] > thread


async def test_edit_caption_and_media(box: SandboxClient) -> None:
    async with aiogram_bot(box.base) as bot:
        sent = await bot.send_photo(USER, BufferedInputFile(png(), "a.png"), caption="old")
        edited = await bot.edit_message_caption(
            chat_id=USER, message_id=sent.message_id, caption="new"
        )
        assert not isinstance(edited, bool) and edited.caption == "new"
        swapped = await bot.edit_message_media(
            chat_id=USER,
            message_id=sent.message_id,
            media=InputMediaPhoto(media=BufferedInputFile(png(salt=9), "b.png"), caption="c"),
        )
        assert not isinstance(swapped, bool) and swapped.caption == "c"
        where = await bot.send_location(USER, latitude=52.5, longitude=13.4)
        assert where.location is not None and where.location.latitude == 52.5
