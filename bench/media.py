"""Files through the gateway: multipart upload throughput, and photo delivery at Telegram's limits.

1. **upload**: `--uploads` multipart requests, each a distinct ~5 MB PNG photo, 4 at a time,
   to chats the sandbox does not know (their sends fail at once with `chat not found`, so the
   sandbox holds no 5 MB files; the gateway still uploads each to it). Reports requests/s
   (uploads / wall time from the first request to the last 202) and the gateway's RSS before,
   after, and its peak (VmHWM) [issue 12: RSS must not grow with the file size].
2. **delivery**: 1,000 distinct small PNG photos, round robin to 100 private chats, enqueued as
   multipart requests (16 at a time) with the sandbox at Telegram's limits (30/s, 1/s per chat,
   20/min per group) and the gateway at its defaults. messages/s = photos / (last delivery -
   first 202) [target >= 0.97 x 30], the sandbox's 429s [target 0], chats complete and in order.

    .venv/bin/python bench/media.py [--uploads 40] [--photos 1000] [--chats 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import struct
import time
import zlib
from typing import Any

import aiohttp
from common import (
    Service,
    Workspace,
    bounded_gather,
    chat_messages,
    create_chats,
    gateway_process,
    https_session,
    make_workspace,
    plain_session,
    rss_kib,
    sandbox_json,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)

TELEGRAM_RATE = 30.0
WAIT_LIMIT_SECONDS = 200.0
MB = 1000 * 1000


def png(salt: int, padding: int) -> bytes:
    """A valid 64x48 PNG, distinct per `salt`, padded with a text chunk to reach a size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 64, 48, 8, 0, 0, 0, 0)
    pixels = zlib.compress((b"\x00" + bytes([salt % 256]) * 64) * 48)
    note = f"salt {salt}\x00".encode() + b"x" * padding
    body = chunk(b"IHDR", header) + chunk(b"tEXt", note) + chunk(b"IDAT", pixels)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def photo_form(chat: int, image: bytes, caption: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    payload = {"chat_id": chat, "photo": "attach://p", "text": caption}
    form.add_field("payload", json.dumps(payload), content_type="application/json")
    form.add_field("p", image, filename="photo.png", content_type="image/png")
    return form


async def post_photo(
    http: aiohttp.ClientSession, url: str, chat: int, image: bytes, caption: str
) -> str:
    async with http.post(f"{url}/enqueue_command", data=photo_form(chat, image, caption)) as resp:
        answer = await resp.json()
        if resp.status != 202:
            raise RuntimeError(f"{resp.status} {answer}")
        return str(answer["id"])


async def upload_bench(args: argparse.Namespace, ws: Workspace, sandbox: Service) -> dict[str, Any]:
    size = 5 * MB
    async with (
        https_session(ws, 8, timeout=120) as http,
        gateway_process(ws, sandbox.url, http) as gw,
    ):
        await post_photo(http, gw.url, 900_001, png(0, 1000), "warm-up")
        await asyncio.sleep(1)
        pid = gw.proc.pid
        before = rss_kib(pid), rss_kib(pid, "VmHWM")
        images = [png(n + 1, size - 200) for n in range(4)]  # rotated; salted below per request

        async def one(n: int) -> str:
            image = images[n % 4][:-12] + struct.pack(">I", n) + images[n % 4][-12:]
            # (a distinct trailing byte pattern: distinct content, so no file_id reuse)
            return await post_photo(http, gw.url, 900_000 + n % 50, image, f"upload {n}")

        start = time.monotonic()
        await bounded_gather([functools.partial(one, n) for n in range(args.uploads)], 4)
        seconds = time.monotonic() - start
        after = rss_kib(pid), rss_kib(pid, "VmHWM")
    return {
        "uploads": args.uploads,
        "photo_bytes": len(images[0]) + 4,
        "seconds": round(seconds, 2),
        "requests_per_second": round(args.uploads / seconds, 2),
        "megabytes_per_second": round(args.uploads * size / MB / seconds, 1),
        "rss_kib_before": before[0],
        "rss_kib_after": after[0],
        "peak_rss_kib_before": before[1],
        "peak_rss_kib_after": after[1],
    }


async def delivery_bench(
    args: argparse.Namespace, ws: Workspace, control: aiohttp.ClientSession, sandbox: Service
) -> dict[str, Any]:
    await create_chats(control, sandbox.url, range(1, args.chats + 1))
    async with https_session(ws, 16) as http, gateway_process(ws, sandbox.url, http) as gw:
        await sandbox_json(control, sandbox.url, "DELETE", "stats")
        first_202: list[float] = []

        async def one(n: int) -> str:
            chat = n % args.chats + 1
            command_id = await post_photo(
                http, gw.url, chat, png(n, 8000), f"chat {chat} seq {n // args.chats}"
            )
            if not first_202:
                first_202.append(time.time())
            return command_id

        ids = await bounded_gather([functools.partial(one, n) for n in range(args.photos)], 16)
        enqueue_seconds = time.time() - first_202[0]
        print(f"  enqueued {len(ids)} photos in {enqueue_seconds:.1f}s", flush=True)
        for _ in range(int(WAIT_LIMIT_SECONDS / 0.5)):
            counters = await scrape_metrics(http, gw.url)
            done = counters.get("gateway_commands_sent_total", 0) + counters.get(
                "gateway_commands_failed_total", 0
            )
            if done >= args.photos:
                break
            await asyncio.sleep(0.5)

        async def fetch(command_id: str) -> dict[str, Any]:
            async with http.get(f"{gw.url}/commands/{command_id}") as resp:
                data: dict[str, Any] = await resp.json()
                return data

        commands = await bounded_gather([functools.partial(fetch, c) for c in ids], 16)
    stats = await sandbox_json(control, sandbox.url, "GET", "stats")
    sent = [c for c in commands if c["status"] == "sent"]
    last = max(c["updated_at"] for c in sent) if sent else None
    rate = len(sent) / (last - first_202[0]) if last and len(sent) == args.photos else None
    complete = 0
    for chat in range(1, args.chats + 1):
        captions = [m.get("caption", "") for m in await chat_messages(control, sandbox.url, chat)]
        expected = [f"chat {chat} seq {k}" for k in range(args.photos // args.chats)]
        complete += captions == expected
    return {
        "photos": args.photos,
        "chats": args.chats,
        "enqueue_seconds": round(enqueue_seconds, 2),
        "sent": len(sent),
        "messages_per_second": round(rate, 2) if rate else None,
        "fraction_of_30": round(rate / TELEGRAM_RATE, 3) if rate else None,
        "target_fraction": 0.97,
        "sandbox_429": stats["too_many_requests"],
        "max_global_per_second": stats["max_global_per_second"],
        "max_chat_per_second": stats["max_chat_per_second"],
        "chats_complete_in_order": complete,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_root() as root:
        result: dict[str, Any] = {}
        async with plain_session() as control, sandbox_process(root, control) as sandbox:
            if args.uploads:
                print(f"upload: {args.uploads} multipart photos of 5 MB", flush=True)
                result["upload"] = await upload_bench(args, make_workspace(root / "ws-up"), sandbox)
                print(f"  {result['upload']}", flush=True)
        async with plain_session() as control, sandbox_process(root, control) as sandbox:
            if args.photos:
                print(f"delivery: {args.photos} photos to {args.chats} chats", flush=True)
                ws = make_workspace(root / "ws-delivery")
                result["delivery"] = await delivery_bench(args, ws, control, sandbox)
                print(f"  {result['delivery']}", flush=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=100)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"-> {write_result('media', result)}")


if __name__ == "__main__":
    main()
