"""Webhook delivery, as Telegram's Bot API server does it.

One update per `POST` to the webhook URL, as `application/json`, with
`X-Telegram-Bot-Api-Secret-Token` when a secret was set. TLS is always verified: the trust
root is the uploaded certificate when there is one (else the system's trust store) and the
certificate must match the URL's host (an IP host must match an IP SAN). With `ip_address`,
the connection goes to that address but is still verified against the URL's host.

Any 2xx is success. A failure (`Wrong response from the webhook: 500 Internal Server Error`,
`SSL error {...}`, `Connection refused`, ...) becomes the bot's `last_error_message` and the
update is retried: the first retry at once, then after `retry_base_seconds`, doubling up to
`retry_cap_seconds` (Telegram's cap varies between 60 and 120 s; the sandbox's is fixed); a
`Retry-After` header in the answer (0-3600 s) replaces the backoff. An update whose next try
would come after its 24 h lifetime is dropped. Redirects are not followed. Updates of one
chat go strictly one after another; different chats in parallel, at most `max_connections`
requests at a time. A 2xx answer may carry one Bot API call (`{"method": ...}`), which is
executed without telling the bot the outcome, like Telegram does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from yarl import URL

from gateway.constants import SECRET_TOKEN_HEADER
from gateway.sandbox.state import BotState, SandboxState, WebhookConfig
from gateway.sandbox.updates import PendingUpdate

logger = logging.getLogger(__name__)

AnswerHandler = Callable[[BotState, dict[str, Any]], Coroutine[Any, Any, None]]
MAX_RETRY_AFTER = 3600
_SSL_CODES = {"CERTIFICATE_VERIFY_FAILED": "0A000086", "WRONG_VERSION_NUMBER": "0A00010B"}
#: Methods a webhook answer may not call (besides every get*).
_REFUSED_ANSWERS = frozenset({"setwebhook", "deletewebhook", "close", "logout"})


def ssl_context(certificate: bytes | None) -> ssl.SSLContext:
    """A verifying client context trusting `certificate` (PEM) or the system's roots."""
    if certificate is not None:
        context = ssl.create_default_context(cadata=certificate.decode("ascii"))
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def describe_failure(exc: BaseException) -> str:
    """A delivery failure in the words Telegram's getWebhookInfo uses."""
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        reason = str(getattr(error, "reason", None) or "SSL_ERROR")
        code = _SSL_CODES.get(reason)
        text = reason.lower().replace("_", " ")
        return f"SSL error {{error:{code + ':' if code else ''}SSL routines::{text}}}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "Connection refused"
        if isinstance(exc.os_error, TimeoutError):
            return "Connection timed out"
        return f"Connection error: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "Webhook connection closed"
    if isinstance(exc, TimeoutError):
        return "Read timeout expired"
    return f"Connection error: {exc}"


def _retry_after(headers: Any) -> int:
    try:
        seconds = int(headers.get("Retry-After", "0"))
    except ValueError:
        return 0
    return min(max(seconds, 0), MAX_RETRY_AFTER)


class Deliveries:
    """One delivery pump per bot with a webhook; `close()` stops them all."""

    def __init__(self, sandbox: SandboxState, answer: AnswerHandler) -> None:
        self.sandbox = sandbox
        self._answer = answer
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def webhook_changed(self, bot: BotState) -> None:
        """Start a pump for `bot` if it has a webhook and none is running."""
        pump = self._pumps.get(bot.bot_id)
        if bot.webhook is not None and (pump is None or pump.done()):
            self._pumps[bot.bot_id] = asyncio.create_task(
                self._pump(bot), name=f"sandbox-webhook-{bot.bot_id}"
            )

    async def close(self) -> None:
        """Cancel the pumps and answer calls, and wait for them to finish."""
        tasks = [*self._pumps.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pumps.clear()

    async def _pump(self, bot: BotState) -> None:
        session: aiohttp.ClientSession | None = None
        version: int | None = None
        in_flight: dict[int, asyncio.Task[None]] = {}
        try:
            while (hook := bot.webhook) is not None:
                if hook.version != version or session is None:
                    await _cancel_all(in_flight)
                    if session is not None:
                        await session.close()
                    session, version = self._session(hook), hook.version
                generation = bot.updates.changed.generation
                bot.updates.expire()
                now = time.monotonic()
                for update in bot.updates.ready(now, hook.max_connections - len(in_flight)):
                    update.in_flight = True
                    task = asyncio.create_task(self._deliver(bot, hook, session, update))
                    in_flight[update.update_id] = task
                    task.add_done_callback(
                        functools.partial(_finished, bot, in_flight, update.update_id)
                    )
                wakeup = bot.updates.next_wakeup(now)
                timeout = None if wakeup is None else wakeup - now
                await bot.updates.changed.wait(generation, timeout)
        finally:
            await _cancel_all(in_flight)
            if session is not None:
                await session.close()

    def _session(self, hook: WebhookConfig) -> aiohttp.ClientSession:
        settings = self.sandbox.settings
        connector = aiohttp.TCPConnector(
            ssl=ssl_context(hook.certificate), limit=hook.max_connections
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.webhook_connect_timeout_seconds,
            sock_read=settings.webhook_timeout_seconds,
        )
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def _deliver(
        self,
        bot: BotState,
        hook: WebhookConfig,
        session: aiohttp.ClientSession,
        update: PendingUpdate,
    ) -> None:
        try:
            error, retry_after = await self._post(bot, hook, session, update)
        finally:
            update.in_flight = False
        if error is None:
            bot.updates.forget(update.update_id, delivered=True)
            self.sandbox.stats.webhook_deliveries += 1
            logger.debug("bot %s: update %s delivered", bot.bot_id, update.update_id)
            return
        self.sandbox.stats.webhook_failures += 1
        bot.last_error_date, bot.last_error_message = int(time.time()), error
        update.attempts += 1
        update.last_error = error
        settings = self.sandbox.settings
        if retry_after:
            delay = float(retry_after)
        elif update.attempts == 1:
            delay = 0.0
        else:
            backoff = settings.retry_base_seconds * 2 ** (update.attempts - 2)
            delay = min(settings.retry_cap_seconds, backoff)
        if time.time() + delay > update.created_at + settings.update_ttl_seconds:
            logger.warning("bot %s: dropping update %s: %s", bot.bot_id, update.update_id, error)
            bot.updates.forget(update.update_id)
            return
        update.wakeup_at = time.monotonic() + delay
        logger.info(
            "bot %s: webhook delivery of update %s failed (%s); retry in %.1f s",
            bot.bot_id,
            update.update_id,
            error,
            delay,
        )

    async def _post(
        self,
        bot: BotState,
        hook: WebhookConfig,
        session: aiohttp.ClientSession,
        update: PendingUpdate,
    ) -> tuple[str | None, int]:
        url = URL(hook.url if "://" in hook.url else f"https://{hook.url}")
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[SECRET_TOKEN_HEADER] = hook.secret_token
        extra: dict[str, Any] = {}
        if hook.ip_address:
            headers["Host"] = url.raw_authority.rpartition("@")[2]
            url = url.with_host(hook.ip_address)
            extra["server_hostname"] = hook.host
        body = json.dumps(update.body(), ensure_ascii=False, separators=(",", ":"))
        try:
            async with session.post(
                url, data=body.encode(), headers=headers, allow_redirects=False, **extra
            ) as response:
                content = await response.read()
                if 200 <= response.status <= 299:
                    self._maybe_answer(bot, response.content_type, content)
                    return None, 0
                reason = f"{response.status} {response.reason or ''}".strip()
                return f"Wrong response from the webhook: {reason}", _retry_after(response.headers)
        except (aiohttp.ClientError, ssl.SSLError, OSError, TimeoutError) as exc:
            return describe_failure(exc), 0

    def _maybe_answer(self, bot: BotState, content_type: str, content: bytes) -> None:
        if content_type != "application/json" or not content:
            return
        try:
            payload = json.loads(content)
        except ValueError:
            return
        method = payload.get("method") if isinstance(payload, dict) else None
        if not isinstance(method, str) or not method:
            return
        if method.lower().startswith("get") or method.lower() in _REFUSED_ANSWERS:
            return
        task = asyncio.create_task(self._answer(bot, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _finished(
    bot: BotState,
    in_flight: dict[int, asyncio.Task[None]],
    update_id: int,
    task: asyncio.Task[None],
) -> None:
    in_flight.pop(update_id, None)
    bot.updates.changed.notify()
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("bot %s: delivery of update %s crashed", bot.bot_id, update_id, exc_info=exc)


async def _cancel_all(tasks: dict[int, asyncio.Task[None]]) -> None:
    pending = list(tasks.values())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    tasks.clear()
