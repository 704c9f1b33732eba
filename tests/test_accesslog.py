"""The access log: one line per request in aiohttp's default format, written cheaply."""

from __future__ import annotations

import logging
import re

import pytest

from tests.conftest import USER, Gateway

#: aiohttp's default: `%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"`.
LINE = re.compile(
    r"^127\.\d+\.\d+\.\d+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"(?P<request>[^"]+)" (?P<status>\d{3}) (?P<size>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)


async def test_each_request_is_one_line_in_aiohttps_format(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with gateway.http.post(
        gateway.url + "/enqueue_command?x=1",
        json={"chat_id": USER, "text": "logged"},
        headers={**gateway.auth, "Referer": "https://ops.example/", "User-Agent": "bench/1"},
    ) as resp:
        assert resp.status == 202
        size = len(await resp.read())
    async with gateway.http.get(gateway.url + "/nowhere") as resp:
        assert resp.status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    first, second = (m.groupdict() for m in matches if m is not None)
    assert int(first.pop("size")) > size  # as aiohttp's %b: the headers count too
    assert first == {
        "request": "POST /enqueue_command?x=1 HTTP/1.1",
        "status": "202",
        "referer": "https://ops.example/",
        "agent": "bench/1",
    }
    assert second["request"] == "GET /nowhere HTTP/1.1" and second["status"] == "404"
    assert second["referer"] == "-"


async def test_nothing_is_formatted_above_info(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp.access")
    async with gateway.http.get(gateway.url + "/nowhere") as resp:
        assert resp.status == 404
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]
