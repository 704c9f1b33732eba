"""Files the gateway fetches itself (`"fetch": true`): only from `[media] fetch_allowed_networks`.

For files on internal hosts Telegram cannot reach (a Grafana renderer, a CI server). The URL's
host is checked before any connection (every address a name resolves to must be allowed; empty
networks: fetching is off), the connection is fenced again by `gateway.egress` (DNS rebinding,
IP literals), a redirect is followed only to a URL that passes the same check, and the body is
streamed to the media store under a size cap and a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import mimetypes
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from gateway.egress import EgressRefused, Networks, allowed, canonical, host_address
from gateway.errors import InputError
from gateway.media.intake import FileInfo, too_large
from gateway.media.store import MediaStore

SETTING = "[media] fetch_allowed_networks"
MAX_REDIRECTS = 3
CHUNK = 256 * 1024


def _refused(field: str, message: str) -> InputError:
    return InputError(f"{field}: {message}", code="forbidden_url", field=field)


async def check_fetch_url(url: str, networks: Networks, field: str) -> None:
    """400 unless every address of the URL's host lies in the allowed networks."""
    if not networks:
        raise _refused(field, f"fetching is disabled: {SETTING} is empty")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(field, "only http(s) URLs can be fetched")
    if "@" in parts.netloc:
        raise _refused(field, "user information (user@host) is not allowed in the URL")
    try:
        address = host_address(parts.hostname)
    except EgressRefused as exc:
        raise _refused(field, str(exc)) from None
    if address is not None:
        addresses: list[Any] = [address]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(parts.hostname, parts.port or 0, type=socket.SOCK_STREAM), 5.0
            )
        except (OSError, TimeoutError):
            raise _refused(field, f"{parts.hostname} does not resolve") from None
        addresses = [canonical(ipaddress.ip_address(i[4][0])) for i in infos]
    for found in addresses:
        if not allowed(found, networks):
            raise _refused(field, f"{parts.hostname} ({found}) is outside {SETTING}")


async def fetch_file(
    session: aiohttp.ClientSession,
    url: str,
    networks: Networks,
    field: str,
    store: MediaStore,
    max_bytes: int,
    timeout: float,
) -> FileInfo:
    """Download `url` into the store (synced); 400 naming `field` when it cannot be had."""
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(session, url, networks, field, store, max_bytes)
    except TimeoutError:
        raise InputError(
            f"{field}: the fetch took longer than {timeout:g}s ([media] fetch_timeout)",
            code="fetch_failed",
            field=field,
        ) from None


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    networks: Networks,
    field: str,
    store: MediaStore,
    max_bytes: int,
) -> FileInfo:
    for _ in range(MAX_REDIRECTS + 1):
        await check_fetch_url(url, networks, field)
        try:
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200:
                    raise InputError(
                        f"{field}: the server answered {resp.status}",
                        code="fetch_failed",
                        field=field,
                    )
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise too_large(field, resp.content_length, max_bytes, "max_upload_bytes")
                upload = store.begin()
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        if upload.size + len(chunk) > max_bytes:
                            raise too_large(field, None, max_bytes, "max_upload_bytes")
                        await upload.write(chunk)
                except BaseException:
                    upload.abort()
                    raise
                if upload.size == 0:
                    upload.abort()
                    raise InputError(f"{field}: the file is empty", code="empty_file", field=field)
                stored = await store.commit(upload)
                name = urlsplit(url).path.rsplit("/", 1)[-1] or "file"
                mime = resp.content_type or mimetypes.guess_type(name)[0] or ""
                return FileInfo(stored.sha256, stored.size, name[:255], mime)
        except aiohttp.ClientError as exc:
            raise InputError(
                f"{field}: the fetch failed ({type(exc).__name__})",
                code="fetch_failed",
                field=field,
            ) from None
    raise InputError(f"{field}: too many redirects", code="fetch_failed", field=field)
