"""Forum topics through the gateway: sends into a topic, per-chat defaults, answers in the topic."""

from __future__ import annotations

import asyncio

from tests.conftest import USER, GatewayFactory, Sandbox

FORUM = -1009876543210
FAST = {"GATEWAY_FLOOD_CHAT_PER_SECOND": "50", "GATEWAY_FLOOD_GROUP_PER_MINUTE": "600"}


async def forum_with_topic(sandbox: Sandbox, name: str = "Alerts") -> int:
    await sandbox.control(
        "POST",
        "chats",
        {"chat_id": FORUM, "type": "supergroup", "is_forum": True, "bot_id": 4242},
    )
    topic = await sandbox.bot_api("createForumTopic", chat_id=FORUM, name=name)
    assert topic["ok"], topic
    thread: int = topic["result"]["message_thread_id"]
    return thread


async def test_a_message_into_a_topic_and_a_wrong_topic(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    thread = await forum_with_topic(sandbox)
    async with gateway_factory(FAST) as gw:
        status, answer = await gw.enqueue(
            {"chat_id": FORUM, "text": "disk full", "message_thread_id": thread}
        )
        assert status == 202, answer
        sent = await gw.command(answer["id"], wait=20)
        status, answer = await gw.enqueue(
            {"chat_id": FORUM, "text": "lost", "message_thread_id": thread + 50}
        )
        lost = await gw.command(answer["id"], wait=20)
    assert sent["status"] == "sent" and sent["result"]["message_thread_id"] == thread
    assert sent["result"]["is_topic_message"] is True
    assert lost["status"] == "failed"
    assert lost["error"]["description"] == "Bad Request: message thread not found"


async def test_chat_defaults_route_to_a_topic_silently(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    thread = await forum_with_topic(sandbox)
    other = await sandbox.bot_api("createForumTopic", chat_id=FORUM, name="Other")
    toml = (
        f"[[chat_defaults]]\nchat_id = {FORUM}\nthread_id = {thread}\ndisable_notification = true\n"
    )
    async with gateway_factory(FAST, toml=toml) as gw:
        _, first = await gw.enqueue({"chat_id": FORUM, "text": "to the default topic"})
        _, second = await gw.enqueue(
            {
                "chat_id": FORUM,
                "text": "explicit topic",
                "message_thread_id": other["result"]["message_thread_id"],
            }
        )
        one = await gw.command(first["id"], wait=20)
        two = await gw.command(second["id"], wait=20)
    assert one["result"]["message_thread_id"] == thread
    assert two["result"]["message_thread_id"] == other["result"]["message_thread_id"]


async def test_a_command_from_a_topic_is_answered_in_it(
    gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    thread = await forum_with_topic(sandbox)
    async with gateway_factory(FAST):
        said = await sandbox.say("/help", chat_id=FORUM, message_thread_id=thread, user_id=USER)
        for _ in range(200):
            answers = [
                m
                for m in await sandbox.messages(FORUM)
                if m.get("reply_to_message_id") == said["message_id"]
            ]
            if answers:
                break
            await asyncio.sleep(0.05)
    assert answers, "no answer to /help"
    assert answers[0]["message_thread_id"] == thread
