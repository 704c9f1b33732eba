"""Bot API media methods: sendPhoto, sendDocument, sendVideo, sendAudio, sendVoice,
sendAnimation, sendMediaGroup, editMessageCaption, editMessageMedia, sendLocation, getFile.

A file parameter is an uploaded part (`attach://<name>` or the parameter's own part), an http(s)
URL the sandbox fetches (photos up to 5 MB, other files up to 20 MB), or a file_id this bot
received. Uploads are limited to 10 MB for photos and 50 MB otherwise; a photo must be an image
(PNG, JPEG, GIF or WebP). Wording follows Telegram's; where the server's exact words could not
be checked, docs/sandbox.md says so.
"""

from __future__ import annotations

import mimetypes
import time
from typing import Any

import aiohttp

from gateway import constants as c
from gateway.sandbox.calls import Call, MethodTable, admit_send, require_chat
from gateway.sandbox.chats import Chat, StoredMessage
from gateway.sandbox.files import FileHandle, SandboxFiles, image_size
from gateway.sandbox.formatting import format_text
from gateway.sandbox.keyboards import read_reply_markup
from gateway.sandbox.markup import utf16_len
from gateway.sandbox.messages import NOT_MODIFIED, editable, reply_target
from gateway.sandbox.params import UploadedFile
from gateway.sandbox.replies import ApiError, bad_request
from gateway.sandbox.topics import thread_param

METHODS = MethodTable()
KIND_NAMES = {
    "photo": "Photo",
    "document": "Document",
    "video": "Video",
    "audio": "Audio",
    "voice": "Voice",
    "animation": "Animation",
}
URL_LIMIT = {"photo": 5 * 1000 * 1000}
URL_LIMIT_DEFAULT = 20 * 1000 * 1000
UPLOAD_LIMIT = {"photo": c.TELEGRAM_MAX_PHOTO_BYTES}
GET_FILE_LIMIT = 20 * 1000 * 1000
ALBUM_KINDS = ("photo", "video", "document", "audio")
#: InputMedia types Telegram's server reads (a voice message is no InputMedia).
INPUT_MEDIA_TYPES = ("photo", "video", "animation", "audio", "document")
WRONG_FILE = "wrong file identifier/HTTP URL specified"


def caption_of(params: Any, prefix: str = "") -> tuple[str, list[dict[str, Any]]]:
    """A caption parsed like a text (`caption`, `parse_mode`, `caption_entities`); "" is fine."""
    if isinstance(params, dict):
        raw, mode = str(params.get("caption") or ""), str(params.get("parse_mode") or "")
        entities = params.get("caption_entities")
    else:
        raw, mode = params.string("caption"), params.string("parse_mode")
        entities = params.json("caption_entities", "caption entities")
    if not raw:
        return "", []
    parsed = format_text(raw, mode, entities, bot_commands=False, max_length=1 << 30)
    if utf16_len(parsed.text) > c.MAX_CAPTION_LENGTH:
        raise bad_request("message caption is too long")
    return parsed.text, parsed.entities


async def resolve_file(
    call: Call, kind: str, value: str, upload: UploadedFile | None
) -> list[FileHandle]:
    """The file a parameter names, stored for the bot; a photo's sizes, smallest first."""
    files = call.sandbox.files
    if upload is not None:
        return _store(call, kind, upload.data, upload.content_type, upload.filename, True)
    value = value.strip()
    if not value:
        raise bad_request(f"there is no {kind} in the request")
    if value.lower().startswith(("http://", "https://")):
        data, mime = await _fetch(value, URL_LIMIT.get(kind, URL_LIMIT_DEFAULT))
        name = value.rsplit("/", 1)[-1] or None
        if kind == "photo" and image_size(data) is None:
            raise bad_request("wrong type of the web page content")
        return _store(call, kind, data, mime, name, False)
    handle = files.find(call.bot.bot_id, value)
    if handle is None:
        raise bad_request(WRONG_FILE)
    if handle.file.kind != kind and {handle.file.kind, kind} != {"animation", "document"}:
        actual, wanted = KIND_NAMES[handle.file.kind], KIND_NAMES.get(kind, kind)
        raise bad_request(f"can't use file of type {actual} as {wanted}")
    return [
        h for h in files.handles.values() if h.file is handle.file and h.bot_id == handle.bot_id
    ]


def _store(
    call: Call, kind: str, data: bytes, mime: str | None, name: str | None, uploaded: bool
) -> list[FileHandle]:
    if not data:
        raise bad_request("file must be non-empty")
    if uploaded and len(data) > UPLOAD_LIMIT.get(kind, c.TELEGRAM_MAX_UPLOAD_BYTES):
        raise bad_request("file is too big")
    dims = image_size(data) if kind in ("photo", "animation", "video") else None
    if kind == "photo" and dims is None:
        raise bad_request("IMAGE_PROCESS_FAILED")
    if uploaded:
        call.sandbox.files.uploads += 1
    if not mime or mime == "application/octet-stream":  # Telegram goes by the file name
        mime = mimetypes.guess_type(name or "")[0]
    return call.sandbox.files.add(call.bot.bot_id, kind, data, mime, name, dims)


async def _fetch(url: str, limit: int) -> tuple[bytes, str | None]:
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as resp,
        ):
            if resp.status != 200:
                raise bad_request("failed to get HTTP URL content")
            data = await resp.content.read(limit + 1)
            if len(data) > limit:
                raise bad_request("failed to get HTTP URL content")
            return data, resp.content_type
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise bad_request("failed to get HTTP URL content") from None


def media_fields(kind: str, handles: list[FileHandle]) -> dict[str, Any]:
    """The message fields of a file: `photo` (its sizes) or `document`, `video`, ..."""
    described = [SandboxFiles.describe(h) for h in handles]
    return {"photo": described} if kind == "photo" else {kind: described[-1]}


def media_record(kind: str, handles: list[FileHandle]) -> dict[str, Any]:
    """What the control API shows of a message's file."""
    largest = handles[-1]
    stored = largest.file
    return {
        "kind": kind,
        "file_id": largest.file_id,
        "file_unique_id": largest.unique_id,
        "file_size": stored.size,
        "file_name": stored.file_name,
        "mime_type": stored.mime_type,
        "width": stored.width or None,
        "height": stored.height or None,
        "sizes": len(handles),
    }


def _store_message(
    call: Call, chat: Chat, extra: dict[str, Any], media: list[dict[str, Any]], **fields: Any
) -> StoredMessage:
    params = call.params
    thread = thread_param(call, chat)
    if thread is not None:
        extra["message_thread_id"] = thread
        extra["is_topic_message"] = True
    if params.boolean("protect_content"):
        extra["has_protected_content"] = True
    message = call.bot.add_message(chat, from_bot=True, extra=extra, **fields)
    message.media = media
    return message


async def _send_file(call: Call, kind: str) -> dict[str, Any]:
    params = call.params
    markup = read_reply_markup(params.json("reply_markup", "reply keyboard markup"))
    caption, entities = caption_of(params)
    chat = require_chat(call)
    thread_param(call, chat)
    reply_to = reply_target(call, chat)
    handles = await resolve_file(call, kind, params.string(kind), params.file(kind))
    admit_send(call, chat)
    extra = media_fields(kind, handles)
    if caption:
        extra["caption"] = caption
        if entities:
            extra["caption_entities"] = entities
    message = _store_message(
        call,
        chat,
        extra,
        [media_record(kind, handles)],
        reply_markup=markup,
        reply_to_message_id=reply_to,
    )
    return call.bot.message_json(message)


def _file_method(kind: str) -> None:
    name = "send" + KIND_NAMES[kind]

    async def handler(call: Call) -> dict[str, Any]:
        return await _send_file(call, kind)

    handler.__doc__ = f"{name}: one {kind}, uploaded, by URL or by file_id."
    METHODS.method(name)(handler)


for _kind in KIND_NAMES:
    _file_method(_kind)


def _input_media(item: Any) -> dict[str, Any]:
    """One InputMedia object, checked as Client.cpp's get_input_media reads it."""

    def refuse(reason: str) -> ApiError:
        return bad_request(f"can't parse InputMedia: {reason}")

    if not isinstance(item, dict):
        raise refuse("expected an Object")
    for name in ("type", "media"):
        if item.get(name) is not None and not isinstance(item[name], str):
            raise refuse(f'Field "{name}" must be of type String')
    if "type" not in item:
        raise refuse('Can\'t find field "type"')
    if not item.get("media"):
        raise refuse("media not found")
    if item["type"] not in INPUT_MEDIA_TYPES:
        raise refuse(f'type "{item["type"]}" is unsupported')
    return item


def _album_items(call: Call) -> list[dict[str, Any]]:
    media = call.params.json("media", "media")
    if media is None:
        raise bad_request('parameter "media" is required')
    if not isinstance(media, list):
        raise bad_request("expected an Array of InputMedia")
    media = [_input_media(item) for item in media]
    if len(media) < c.ALBUM_SIZE_RANGE[0]:
        raise bad_request("media must include at least 2 items")  # wording unverified
    if len(media) > c.ALBUM_SIZE_RANGE[1]:
        raise bad_request("too many messages to send as an album")  # wording unverified
    kinds = []
    for item in media:
        if item["type"] not in ALBUM_KINDS:
            raise bad_request("can't parse InputMedia JSON object")  # unverified (TDLib's check)
        kinds.append(item["type"])
    for kind in ("document", "audio"):
        if kind in kinds and len(set(kinds)) > 1:
            raise bad_request(f"{kind} can't be mixed with other media types")  # unverified
    return media


@METHODS.method("sendMediaGroup")
async def send_media_group(call: Call) -> list[dict[str, Any]]:
    """An album of 2-10 photos and videos, documents, or audio files."""
    items = _album_items(call)
    captions = [caption_of(item) for item in items]
    chat = require_chat(call)
    thread_param(call, chat)
    reply_to = reply_target(call, chat)
    resolved = []
    for item in items:
        upload = call.params.attached(item["media"])
        resolved.append(await resolve_file(call, item["type"], item["media"], upload))
    admit_send(call, chat, len(items))  # an album of N is N messages
    group_id = str(int(time.time() * 1000))
    answers = []
    for item, handles, (caption, entities) in zip(items, resolved, captions, strict=True):
        extra = {**media_fields(item["type"], handles), "media_group_id": group_id}
        if caption:
            extra["caption"] = caption
            if entities:
                extra["caption_entities"] = entities
        message = _store_message(
            call, chat, extra, [media_record(item["type"], handles)], reply_to_message_id=reply_to
        )
        answers.append(call.bot.message_json(message))
    return answers


@METHODS.method("editMessageCaption")
async def edit_message_caption(call: Call) -> dict[str, Any]:
    """Replace the caption of a message with a file."""
    markup = read_reply_markup(call.params.json("reply_markup", "reply keyboard markup"))
    caption, entities = caption_of(call.params)
    chat, message = editable(call)
    if not message.media:
        raise bad_request("there is no caption in the message to edit")
    if caption == message.extra.get("caption", "") and markup == message.reply_markup:
        raise bad_request(NOT_MODIFIED)
    admit_send(call, chat)
    message.extra.pop("caption_entities", None)
    message.extra.pop("caption", None)
    if caption:
        message.extra["caption"] = caption
        if entities:
            message.extra["caption_entities"] = entities
    message.reply_markup = markup
    message.edit_date = int(time.time())
    return call.bot.message_json(message)


@METHODS.method("editMessageMedia")
async def edit_message_media(call: Call) -> dict[str, Any]:
    """Replace the file (and caption) of a message with a file."""
    media = call.params.json("media", "input media")
    if media is None:
        raise bad_request('parameter "media" is required')
    kind = str(_input_media(media)["type"])
    caption, entities = caption_of(media)
    chat, message = editable(call)
    if not message.media:
        raise bad_request("message can't be edited")
    handles = await resolve_file(call, kind, media["media"], call.params.attached(media["media"]))
    admit_send(call, chat)
    for old in ("photo", *KIND_NAMES, "caption", "caption_entities"):
        message.extra.pop(old, None)
    message.extra.update(media_fields(kind, handles))
    if caption:
        message.extra["caption"] = caption
        if entities:
            message.extra["caption_entities"] = entities
    message.media = [media_record(kind, handles)]
    message.edit_date = int(time.time())
    return call.bot.message_json(message)


@METHODS.method("sendLocation")
async def send_location(call: Call) -> dict[str, Any]:
    """A point on the map."""
    params = call.params
    for name in ("latitude", "longitude"):
        if not params.string(name).strip():
            raise bad_request(f"{name} is empty")
    try:
        latitude = float(params.string("latitude"))
        longitude = float(params.string("longitude"))
    except ValueError:
        raise bad_request("wrong latitude or longitude specified") from None  # unverified
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise bad_request("wrong latitude or longitude specified")
    chat = require_chat(call)
    thread_param(call, chat)
    reply_to = reply_target(call, chat)
    admit_send(call, chat)
    extra = {"location": {"latitude": latitude, "longitude": longitude}}
    message = _store_message(call, chat, extra, [], reply_to_message_id=reply_to)
    return call.bot.message_json(message)


@METHODS.method("getFile")
async def get_file(call: Call) -> dict[str, Any]:
    """A File with its `file_path` for /file/bot<token>/<file_path> (files up to 20 MB)."""
    file_id = call.params.string("file_id").strip()
    if not file_id:
        raise bad_request("file_id not specified")
    handle = call.sandbox.files.find(call.bot.bot_id, file_id)
    if handle is None:
        raise bad_request("invalid file_id")
    if handle.file.size > GET_FILE_LIMIT:
        raise bad_request("file is too big")
    return {
        "file_id": handle.file_id,
        "file_unique_id": handle.unique_id,
        "file_size": handle.file.size,
        "file_path": handle.file.file_path,
    }
