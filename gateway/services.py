"""Calls from the gateway to internal services: command dispatches and answer callbacks.

Both are commands in the queue (methods `dispatch` and `callback`, on lanes of their own that
flood control ignores), so they get the worker's retries, status and crash safety. Every POST is
signed like API requests are: `X-Gateway-Signature: t=<unix>,v1=<hex HMAC-SHA256(key,
"<t>.<body>")>`, with the route's key for dispatches and for the answers to a service's own
questions, and with the asking API client's callback key (`guards.callback_key`) for the answers
to a client's questions.

Route URLs come from the operator's configuration; a `callback_url` comes from an API client, so
it is called through `egress.guarded_session`: only into `[server] callback_allowed_networks`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from gateway import constants as c
from gateway import telegram
from gateway.commands import Command
from gateway.egress import Networks, guarded_session
from gateway.guards import SIGNATURE_HEADER, callback_key, sign
from gateway.outbox import Outbox
from gateway.questions import ask, valid_buttons
from gateway.routes import Route

logger = logging.getLogger(__name__)

CALLBACK_TIMEOUT_SECONDS = 10.0
#: How long buttons in a service's answer stay open.
SERVICE_QUESTION_TIMEOUT_SECONDS = 3600.0
MAX_ANSWER_BYTES = 64 * 1024


def dispatch_command(
    route: Route,
    payload: dict[str, Any],
    chat_id: int,
    message_id: int,
    message_thread_id: int | None = None,
) -> Command:
    """A queued dispatch of one user's command to `route`'s service (answered in its forum
    topic when it came from one)."""
    command = Command(
        method=c.DISPATCH_METHOD,
        params={"chat_id": chat_id},
        lane=f"{c.SERVICE_LANE}dispatch:{chat_id}",
        meta={"route": route.command, "message_id": message_id, "max_attempts": route.max_attempts},
    )
    command.meta["payload"] = {"id": command.id, **payload}
    if message_thread_id is not None:
        command.meta["thread_id"] = message_thread_id
    return command


def _topic(command: Command) -> dict[str, Any]:
    """An answer to a dispatch goes to the forum topic the user's command came from."""
    thread = command.meta.get("thread_id")
    return {"message_thread_id": thread} if isinstance(thread, int) else {}


class ServiceCaller:
    """Executes `dispatch` and `callback` commands for the worker."""

    def __init__(
        self,
        routes: dict[str, Route],
        outbox: Outbox,
        callback_secret: str,
        callback_networks: Networks = (),
    ) -> None:
        self._routes = routes
        self._outbox = outbox
        self._callback_secret = callback_secret
        #: Where a client's `callback_url` may point (`[server] callback_allowed_networks`).
        self.callback_networks = callback_networks
        self._session: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession()
        self._guarded = guarded_session(self.callback_networks)

    async def close(self) -> None:
        for session in (self._session, self._guarded):
            if session is not None:
                await session.close()

    async def __call__(self, command: Command) -> telegram.Outcome:
        if command.method == c.DISPATCH_METHOD:
            return await self._dispatch(command)
        return await self._callback(command)

    async def tell_user(self, command: Command, error: dict[str, Any]) -> None:
        """A dispatch failed for good: say so plainly, in reply to the user's command."""
        if command.method != c.DISPATCH_METHOD:
            return
        name = command.meta.get("route", "?")
        if error.get("code") == "service_refused":
            text = f"{name}: the service refused the command ({error.get('description', '')})"
        elif error.get("code") == "no_route":
            text = f"{name}: this command is no longer available"
        else:
            text = f"{name}: the service did not answer ({command.attempts} attempts)"
        await self._outbox.send(
            "sendMessage",
            chat_id=command.params["chat_id"],
            text=text,
            reply_parameters={"message_id": command.meta["message_id"]},
            **_topic(command),
        )

    async def _dispatch(self, command: Command) -> telegram.Outcome:
        route = self._routes.get(command.meta.get("route", ""))
        if route is None:
            return telegram.Failure("no_route", "the route is no longer configured", False)
        payload = command.meta["payload"]
        status, text, content_type = await self._post(
            self._session, route.url, payload, route.secret.reveal(), route.timeout_s
        )
        if status is None:
            return telegram.Failure("service_unreachable", text, retryable=True)
        if status >= 500 or status == 429:
            return telegram.Failure("service_error", f"HTTP {status}", retryable=True)
        if status >= 400:
            return telegram.Failure("service_refused", f"HTTP {status}", retryable=False)
        if status == 202:
            return telegram.Delivered({"http_status": 202, "answer": "later"})
        reply = await self._reply(route, command, text, content_type)
        return telegram.Delivered({"http_status": status, "reply": reply})

    async def _reply(
        self, route: Route, command: Command, body: str, content_type: str
    ) -> str | None:
        """Queue the service's answer as a reply to the user's message."""
        chat_id = command.params["chat_id"]
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "reply_parameters": {"message_id": command.meta["message_id"]},
            **_topic(command),
        }
        if content_type == "application/json":
            try:
                answer = json.loads(body or "{}")
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or not isinstance(answer.get("text", ""), str):
                params["text"] = f"{route.command}: the service gave an answer I cannot read"
            else:
                params["text"] = answer.get("text") or f"{route.command}: done"
                if answer.get("parse_mode") in ("HTML", "Markdown", "MarkdownV2"):
                    params["parse_mode"] = answer["parse_mode"]
                buttons = answer.get("buttons")
                if buttons and valid_buttons(buttons):
                    return await self._question_reply(route, command, params, buttons)
        else:
            params["text"] = body.strip() or f"{route.command}: done"
        reply = await self._outbox.send("sendMessage", **params)
        return reply.id

    async def _question_reply(
        self, route: Route, command: Command, params: dict[str, Any], buttons: list[list[str]]
    ) -> str:
        """A service answer with buttons: a question whose taps go back to the route's URL."""
        question = ask(
            params,
            buttons=buttons,
            timeout_s=SERVICE_QUESTION_TIMEOUT_SECONDS,
            callback_url=route.url,
            callback_route=route.command,
            context={"dispatch_id": command.id},
        )
        await self._outbox.submit([question])
        return question.id

    async def _callback(self, command: Command) -> telegram.Outcome:
        meta = command.meta
        if meta.get("route"):  # a service's own question: the URL is the operator's
            route = self._routes.get(meta["route"])
            if route is None:
                return telegram.Failure("no_route", "the route is no longer configured", False)
            session, key = self._session, route.secret.reveal()
        else:  # a URL an API client named
            session, key = self._guarded, callback_key(self._callback_secret, meta.get("client"))
        status, text, _ = await self._post(
            session, meta["url"], meta["payload"], key, CALLBACK_TIMEOUT_SECONDS
        )
        if status is not None and 200 <= status < 300:
            return telegram.Delivered({"http_status": status})
        reason = text if status is None else f"HTTP {status}"
        return telegram.Failure("callback_failed", reason, retryable=True)

    async def _post(
        self,
        session: aiohttp.ClientSession | None,
        url: str,
        payload: dict[str, Any],
        key: str,
        timeout: float,
    ) -> tuple[int | None, str, str]:
        """POST signed JSON; (status, body, content type), status None on network trouble."""
        assert session is not None, "ServiceCaller.open() first"
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(key, body, int(time.time())),
            "User-Agent": "telegram-gateway",
        }
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                text = (await resp.content.read(MAX_ANSWER_BYTES)).decode("utf-8", "replace")
                return resp.status, text, resp.content_type
        except TimeoutError:
            return None, f"no answer within {timeout:g}s", ""
        except (aiohttp.ClientError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return None, f"{type(exc).__name__}", ""
