"""Files, photos and albums through the gateway, end to end against the sandbox."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from gateway.clients import add_client
from gateway.guards import SIGNATURE_HEADER, sign
from gateway.sandbox import SandboxSettings
from tests.conftest import BOT_ID, USER, Gateway, GatewayFactory, Sandbox, Workspace
from tests.media_helpers import file_server, png

FAST = {"GATEWAY_FLOOD_CHAT_PER_SECOND": "50", "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "100"}


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=100, chat_per_second=50)


async def upload(
    gw: Gateway, payload: dict[str, Any], files: dict[str, tuple[bytes, str, str]]
) -> tuple[int, dict[str, Any]]:
    """POST /enqueue_command as multipart/form-data: the payload part and file parts."""
    form = aiohttp.FormData()
    form.add_field("payload", json.dumps(payload), content_type="application/json")
    for name, (data, filename, content_type) in files.items():
        form.add_field(name, data, filename=filename, content_type=content_type)
    async with gw.http.post(f"{gw.url}/enqueue_command", data=form, headers=gw.auth) as resp:
        return resp.status, await resp.json()


async def file_bytes(sandbox: Sandbox, file_id: str) -> bytes:
    url = f"{sandbox.url}/sandbox/files/{file_id}"
    async with sandbox.http.get(url, params={"bot_id": str(BOT_ID)}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def delivered(gw: Gateway, command_id: str) -> dict[str, Any]:
    command = await gw.command(command_id, wait=20)
    assert command["status"] == "sent", command
    return command


async def test_a_photo_upload_is_delivered_with_identical_bytes(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    image = png(800, 600, salt=1)
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {
                "method": "sendPhoto",
                "params": {
                    "chat_id": USER,
                    "photo": "attach://p",
                    "caption": "CPU <b>95%</b>",
                    "parse_mode": "HTML",
                },
            },
            {"p": (image, "cpu.png", "image/png")},
        )
        assert status == 202, answer
        command = await delivered(gw, answer["id"])
    assert command["result"]["caption"] == "CPU 95%"
    [message] = await sandbox.messages(USER)
    assert message["media"][0]["kind"] == "photo"
    assert message["media"][0]["width"] == 800
    assert await file_bytes(sandbox, message["media"][0]["file_id"]) == image


@pytest.mark.parametrize(
    ("field", "method"),
    [
        ("document", "sendDocument"),
        ("video", "sendVideo"),
        ("audio", "sendAudio"),
        ("voice", "sendVoice"),
        ("animation", "sendAnimation"),
    ],
)
async def test_each_kind_of_file(
    gateway_factory: GatewayFactory, sandbox: Sandbox, field: str, method: str
) -> None:
    await sandbox.create_chat(USER)
    data = png(32, 32, salt=7) if field in ("video", "animation") else f"{field} bytes".encode()
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {"method": method, "params": {"chat_id": USER, field: "attach://f"}},
            {"f": (data, f"build.{field}", "application/x-test")},
        )
        assert status == 202, answer
        command = await delivered(gw, answer["id"])
    sent = command["result"][field]
    assert sent["file_name"] == f"build.{field}" and sent["file_size"] == len(data)
    [message] = await sandbox.messages(USER)
    assert await file_bytes(sandbox, message["media"][0]["file_id"]) == data


async def test_short_form_document_with_caption_and_a_url_photo(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    async with gateway_factory(FAST) as gw, file_server() as server:
        server.files["/graph.png"] = (png(100, 50), "image/png")
        status, answer = await upload(
            gw,
            {"chat_id": USER, "document": "attach://log", "text": "build #42 failed"},
            {"log": (b"line 1\nline 2\n", "build.txt", "text/plain")},
        )
        assert status == 202, answer
        doc = await delivered(gw, answer["id"])
        # A URL without "fetch": Telegram (here the sandbox) fetches it itself.
        status, answer = await gw.enqueue({"chat_id": USER, "photo": f"{server.url}/graph.png"})
        assert status == 202, answer
        photo = await delivered(gw, answer["id"])
    assert doc["method"] == "sendDocument"
    assert doc["result"]["caption"] == "build #42 failed"
    assert doc["result"]["document"]["mime_type"] == "text/plain"
    assert photo["result"]["photo"][-1]["width"] == 100


async def test_an_album_of_two_uploaded_files(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    first, second = png(salt=1), png(salt=2)
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {
                "chat_id": USER,
                "text": "before / after",
                "media": [
                    {"type": "photo", "media": "attach://a"},
                    {"type": "photo", "media": "attach://b"},
                ],
            },
            {"a": (first, "a.png", "image/png"), "b": (second, "b.png", "image/png")},
        )
        assert status == 202, answer
        command = await delivered(gw, answer["id"])
    assert command["method"] == "sendMediaGroup" and len(command["result"]) == 2
    messages = await sandbox.messages(USER)
    assert [m.get("caption") for m in messages] == ["before / after", None]
    assert messages[0]["media_group_id"] == messages[1]["media_group_id"]
    assert await file_bytes(sandbox, messages[0]["media"][0]["file_id"]) == first
    assert await file_bytes(sandbox, messages[1]["media"][0]["file_id"]) == second


async def test_the_same_bytes_are_uploaded_once(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    image = png(salt=42)
    async with gateway_factory(FAST) as gw:
        ids = []
        for caption in ("first", "second"):
            status, answer = await upload(
                gw,
                {"chat_id": USER, "photo": "attach://p", "text": caption},
                {"p": (image, "same.png", "image/png")},
            )
            assert status == 202, answer
            ids.append((await delivered(gw, answer["id"]))["result"]["photo"][-1])
        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            metrics = await resp.text()
    files = await sandbox.control("GET", f"files?bot_id={BOT_ID}")
    assert files["uploads"] == 1
    assert ids[0]["file_unique_id"] == ids[1]["file_unique_id"]
    assert "gateway_media_reused_total 1.0" in metrics


async def test_limits_are_413_naming_the_limit(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    env = {
        **FAST,
        "GATEWAY_MEDIA_MAX_PHOTO_BYTES": "2000",
        "GATEWAY_MEDIA_MAX_UPLOAD_BYTES": "5000",
    }
    async with gateway_factory(env) as gw:
        status, answer = await upload(
            gw,
            {"chat_id": USER, "photo": "attach://p"},
            {"p": (png(padding=3000), "big.png", "image/png")},
        )
        assert status == 413, answer
        assert "max_photo_bytes" in answer["error"]["message"]
        assert answer["error"]["field"] == "params.photo"
        status, answer = await upload(
            gw,
            {"chat_id": USER, "document": "attach://d"},
            {"d": (b"x" * 6000, "big.bin", "application/octet-stream")},
        )
        assert status == 413, answer
        assert "max_upload_bytes" in answer["error"]["message"]
    leftovers = [p for p in gw.config.media_dir.iterdir() if p.name.startswith(".upload")]
    assert leftovers == []


async def test_bad_requests_are_named(gateway_factory: GatewayFactory, sandbox: Sandbox) -> None:
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw, {"chat_id": USER, "photo": "attach://nope"}, {"p": (png(), "a.png", "image/png")}
        )
        assert status == 400 and answer["error"]["field"] == "params.photo"
        status, answer = await upload(gw, {"chat_id": USER, "text": "hi"}, {})
        assert status == 202, answer  # a multipart request without files is fine
        status, answer = await gw.enqueue(
            {"chat_id": USER, "media": [{"type": "photo", "media": "x"}]}
        )
        assert status == 400 and answer["error"]["code"] == "invalid_album"
        status, answer = await gw.enqueue(
            {
                "chat_id": USER,
                "media": [{"type": "photo", "media": "x"}, {"type": "document", "media": "y"}],
            }
        )
        assert status == 400 and answer["error"]["code"] == "invalid_album"
        # With long_text = "split" a single file's caption is split; an album's cannot be.
        status, answer = await gw.enqueue(
            {
                "chat_id": USER,
                "text": "x" * 1025,
                "media": [{"type": "photo", "media": "a"}, {"type": "photo", "media": "b"}],
            }
        )
        assert status == 400 and answer["error"]["code"] == "caption_too_long"
        assert answer["error"]["field"] == "params.media[0].caption"


async def test_telegrams_refusals_fail_the_command(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {"chat_id": USER, "photo": "attach://p"},
            {"p": (b"MZ\x90\x00 not an image", "evil.png", "image/png")},
        )
        assert status == 202, answer
        bad_mime = await gw.command(answer["id"], wait=20)
        status, answer = await upload(
            gw, {"chat_id": USER, "document": "attach://d"}, {"d": (b"report", "r.pdf", "")}
        )
        doc = await delivered(gw, answer["id"])
        status, answer = await gw.enqueue(
            {"chat_id": USER, "photo": doc["result"]["document"]["file_id"]}
        )
        as_photo = await gw.command(answer["id"], wait=20)
    assert bad_mime["status"] == "failed"
    assert bad_mime["error"]["description"] == "Bad Request: IMAGE_PROCESS_FAILED"
    assert as_photo["status"] == "failed"
    assert as_photo["error"]["description"] == (
        "Bad Request: can't use file of type Document as Photo"
    )


async def test_fetch_only_from_allowed_networks(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    image = png(640, 480, salt=5)
    async with file_server() as server:
        server.files["/render/panel.png"] = (image, "image/png")
        url = f"{server.url}/render/panel.png"
        async with gateway_factory(FAST) as gw:  # default: fetching is off
            status, answer = await gw.enqueue({"chat_id": USER, "photo": url, "fetch": True})
        assert status == 400 and answer["error"]["code"] == "forbidden_url"
        assert "fetch_allowed_networks" in answer["error"]["message"]
        env = {**FAST, "GATEWAY_MEDIA_FETCH_ALLOWED_NETWORKS": "10.0.0.0/8"}
        async with gateway_factory(env) as gw:
            status, answer = await gw.enqueue({"chat_id": USER, "photo": url, "fetch": True})
        assert status == 400 and answer["error"]["code"] == "forbidden_url"
        assert server.hits == 0  # refused before any connection
        env = {**FAST, "GATEWAY_MEDIA_FETCH_ALLOWED_NETWORKS": "127.0.0.1/32"}
        async with gateway_factory(env) as gw:
            status, answer = await gw.enqueue(
                {"chat_id": USER, "photo": url, "fetch": True, "text": "Grafana"}
            )
            assert status == 202, answer
            await delivered(gw, answer["id"])
        assert server.hits == 1
    [message] = await sandbox.messages(USER)
    assert await file_bytes(sandbox, message["media"][0]["file_id"]) == image


async def test_a_long_caption_is_split_into_replies(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    caption = " ".join(f"word{n}" for n in range(400))  # about 2,800 characters
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {"chat_id": USER, "document": "attach://d", "text": caption},
            {"d": (b"report", "report.txt", "text/plain")},
        )
        assert status == 202, answer
        command = await delivered(gw, answer["id"])
    first, *rest = await sandbox.messages(USER)
    assert len(command["result"]) == 1 + len(rest) and len(rest) >= 2
    assert len(first["caption"]) <= 1024 and first["media"]
    assert all(m["reply_to_message_id"] == first["message_id"] for m in rest)
    joined = " ".join([first["caption"], *(m["text"] for m in rest)])
    assert joined.split() == caption.split()


async def test_albums_count_as_n_messages_for_flood_control(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """With 10 messages/s for the bot, four albums of five (to four chats) are 20 messages:
    the gateway spreads them over two seconds, and the sandbox never answers 429."""
    chats = [USER, 3001, 3002, 3003]
    for chat in chats:
        await sandbox.create_chat(chat)
    await sandbox.control("PUT", "limits", {"global_per_second": 10})
    env = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "10", "GATEWAY_FLOOD_CHAT_PER_SECOND": "50"}
    async with gateway_factory(env) as gw:
        ids = []
        for n, chat in enumerate(chats):
            media = [{"type": "photo", "media": f"attach://p{i}"} for i in range(5)]
            files = {f"p{i}": (png(salt=n * 10 + i), f"{i}.png", "image/png") for i in range(5)}
            status, answer = await upload(gw, {"chat_id": chat, "media": media}, files)
            assert status == 202, answer
            ids.append(answer["id"])
        for command_id in ids:
            await delivered(gw, command_id)
    stats = await sandbox.control("GET", "stats")
    assert stats["flood_429"] == 0, stats
    assert sum([len(await sandbox.messages(chat)) for chat in chats]) == 20


async def test_an_album_claimed_with_other_chats_waits_for_its_places(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """A backlog is claimed several chats at a time: an album of five picked with nine texts
    (the bot's ten places of the second taken) waits for its own four more, so the sandbox,
    at 10 messages/s, never sees more than ten in a second (nor answers 429)."""
    album_chat, text_chats = 3100, list(range(3101, 3110))
    for chat in (USER, album_chat, *text_chats):
        await sandbox.create_chat(chat)
    await sandbox.control("PUT", "limits", {"global_per_second": 10})
    held = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "0.001", "GATEWAY_FLOOD_CHAT_PER_SECOND": "50"}
    async with gateway_factory(held) as gw:  # one send goes out; the rest waits in the queue
        status, answer = await gw.enqueue({"chat_id": USER, "text": "first"})
        assert status == 202, answer
        await delivered(gw, answer["id"])
        media = [{"type": "photo", "media": f"attach://p{i}"} for i in range(5)]
        files = {f"p{i}": (png(salt=100 + i), f"{i}.png", "image/png") for i in range(5)}
        status, answer = await upload(gw, {"chat_id": album_chat, "media": media}, files)
        assert status == 202, answer
        ids = [answer["id"]]
        for chat in text_chats:
            status, answer = await gw.enqueue({"chat_id": chat, "text": f"to {chat}"})
            assert status == 202, answer
            ids.append(answer["id"])
    await sandbox.control("DELETE", "stats")
    env = {"GATEWAY_FLOOD_GLOBAL_PER_SECOND": "10", "GATEWAY_FLOOD_CHAT_PER_SECOND": "50"}
    async with gateway_factory(env) as gw:
        for command_id in ids:
            await delivered(gw, command_id)
    stats = await sandbox.control("GET", "stats")
    assert stats["flood_429"] == 0, stats
    assert stats["max_global_per_second"] <= 10, stats
    assert len(await sandbox.messages(album_chat)) == 5
    for chat in text_chats:
        assert [m["text"] for m in await sandbox.messages(chat)] == [f"to {chat}"]


async def test_edits_of_a_photo_and_a_location(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    async with gateway_factory(FAST) as gw:
        status, answer = await upload(
            gw,
            {"chat_id": USER, "photo": "attach://p", "text": "v1"},
            {"p": (png(salt=11), "a.png", "image/png")},
        )
        message_id = (await delivered(gw, answer["id"]))["result"]["message_id"]
        status, answer = await gw.enqueue(
            {
                "method": "editMessageCaption",
                "params": {"chat_id": USER, "message_id": message_id, "caption": "v2"},
            }
        )
        assert status == 202, answer
        await delivered(gw, answer["id"])
        status, answer = await upload(
            gw,
            {
                "method": "editMessageMedia",
                "params": {
                    "chat_id": USER,
                    "message_id": message_id,
                    "media": {"type": "photo", "media": "attach://new", "caption": "v3"},
                },
            },
            {"new": (png(salt=12), "b.png", "image/png")},
        )
        assert status == 202, answer
        await delivered(gw, answer["id"])
        status, answer = await gw.enqueue(
            {
                "method": "sendLocation",
                "params": {"chat_id": USER, "latitude": 48.85, "longitude": 2.35},
            }
        )
        location = await delivered(gw, answer["id"])
    [photo, where] = await sandbox.messages(USER)
    assert photo["caption"] == "v3" and photo["edit_date"] is not None
    assert await file_bytes(sandbox, photo["media"][0]["file_id"]) == png(salt=12)
    assert location["result"]["location"]["latitude"] == 48.85
    assert where["location"]["longitude"] == 2.35


async def test_a_signed_client_uploads_too(
    gateway_factory: GatewayFactory, sandbox: Sandbox, workspace: Workspace
) -> None:
    """The signature check reads the whole body first; the upload is read from that copy."""
    await sandbox.create_chat(USER)
    token, secret = add_client(workspace.clients_file, "signer", signing=True)
    assert secret is not None
    image = png(salt=21)
    async with gateway_factory(FAST) as gw:
        form = aiohttp.FormData()
        payload = {"chat_id": USER, "photo": "attach://p", "text": "signed"}
        form.add_field("payload", json.dumps(payload), content_type="application/json")
        form.add_field("p", image, filename="s.png", content_type="image/png")
        writer = form()
        sink = _Sink()
        await writer.write(sink)  # type: ignore[arg-type]
        body = bytes(sink.data)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": writer.content_type,
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }
        async with gw.http.post(f"{gw.url}/enqueue_command", data=body, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 202, answer
        [message] = await sandbox.wait_messages(USER, 1, timeout=20)
    assert await file_bytes(sandbox, message["media"][0]["file_id"]) == image


class _Sink:
    """Collects what an aiohttp payload writes (to sign the exact bytes sent)."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk
