"""Big texts: capped at the door, and parsed off the event loop so nothing else waits."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from gateway import constants as c
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x" * (c.DEFAULT_MAX_TEXT_LENGTH + 1), "chat_id": USER}, "text"),
        (
            {
                "method": "sendMessage",
                "params": {"chat_id": USER, "text": "x" * (c.DEFAULT_MAX_TEXT_LENGTH + 1)},
            },
            "params.text",
        ),
    ],
)
async def test_text_over_the_cap_is_413_naming_field_and_limit(
    gateway: Gateway, sandbox: Sandbox, body: dict[str, object], field: str
) -> None:
    await sandbox.create_chat(USER)
    status, answer = await gateway.enqueue(body)
    assert status == 413, answer
    assert answer["error"]["code"] == "text_too_large"
    assert answer["error"]["field"] == field
    assert str(c.DEFAULT_MAX_TEXT_LENGTH) in answer["error"]["message"]
    assert "max_text_length" in answer["error"]["message"]
    status, answer = await gateway.enqueue({"text": "x" * c.DEFAULT_MAX_TEXT_LENGTH})
    assert status == 202, answer


async def test_the_cap_is_configurable(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory({"GATEWAY_DELIVERY_MAX_TEXT_LENGTH": "100"}) as gw:
        status, answer = await gw.enqueue({"text": "x" * 101, "chat_id": USER})
        assert status == 413 and "at most 100" in answer["error"]["message"], answer
        status, answer = await gw.enqueue({"text": "x" * 100, "chat_id": USER})
        assert status == 202, answer


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_healthz_answers_while_a_big_markdown_text_is_parsed(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """A 1 MiB MarkdownV2 body takes seconds to parse; /healthz is answered meanwhile (it
    stalled for 4.4 s when the parsing ran on the event loop)."""
    await sandbox.create_chat(USER)
    line = "*bold* and _italic_ words with `code` and a [link](https://example.com/)\n"
    text = line * (1024 * 1024 // len(line))
    env = {
        "GATEWAY_DELIVERY_MAX_TEXT_LENGTH": str(2 * len(text)),
        "GATEWAY_SERVER_BODY_LIMIT": str(4 * len(text)),
    }
    async with gateway_factory(env) as gw:
        body = json.dumps({"text": text, "chat_id": USER, "parse_mode": "MarkdownV2"}).encode()

        async def post() -> tuple[int, dict[str, Any]]:
            headers = {**gw.auth, "Content-Type": "application/json"}
            url = f"{gw.url}/enqueue_command"
            async with gw.http.post(url, data=io.BytesIO(body), headers=headers) as resp:
                return resp.status, await resp.json()

        enqueue = asyncio.create_task(post())
        answered_meanwhile = 0
        for _ in range(600):
            if enqueue.done():
                break
            async with asyncio.timeout(10):  # an upper bound, not a speed
                async with gw.http.get(f"{gw.url}/healthz") as resp:
                    assert resp.status == 200, await resp.text()
            if not enqueue.done():
                answered_meanwhile += 1
            await asyncio.sleep(0.05)
        status, answer = await enqueue
        assert status == 202, answer
        # On the loop, at most one or two got in before the body had arrived or after parsing.
        assert answered_meanwhile >= 5, answered_meanwhile


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_healthz_answers_while_the_worker_splits_a_big_text(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    """Splitting a 1 MiB MarkdownV2 text into parts takes seconds too: the worker does it off
    the event loop, so /healthz is answered between the 202 and the first part going out."""
    await sandbox.create_chat(USER)
    line = "*bold* and _italic_ words with `code` and a [link](https://example.com/)\n"
    text = line * (1024 * 1024 // len(line))
    env = {
        "GATEWAY_DELIVERY_MAX_TEXT_LENGTH": str(2 * len(text)),
        "GATEWAY_SERVER_BODY_LIMIT": str(4 * len(text)),
    }
    async with gateway_factory(env) as gw:
        body = json.dumps({"text": text, "chat_id": USER, "parse_mode": "MarkdownV2"}).encode()
        headers = {**gw.auth, "Content-Type": "application/json"}
        url = f"{gw.url}/enqueue_command"
        async with gw.http.post(url, data=io.BytesIO(body), headers=headers) as resp:
            assert resp.status == 202, await resp.text()
        answered_meanwhile = 0
        for _ in range(1200):
            if await sandbox.messages(USER):
                break
            async with asyncio.timeout(10):  # an upper bound, not a speed
                async with gw.http.get(f"{gw.url}/healthz") as resp:
                    assert resp.status == 200, await resp.text()
            answered_meanwhile += 1
            await asyncio.sleep(0.05)
        assert await sandbox.messages(USER), "the first part never went out"
        # On the loop, /healthz would wait for the whole split: one answer, then the part.
        assert answered_meanwhile >= 5, answered_meanwhile
