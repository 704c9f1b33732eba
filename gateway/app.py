"""The application factory: one aiohttp app carrying the webhook, the REST API and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiogram.exceptions import AiogramError, TelegramUnauthorizedError
from aiohttp import web

from gateway import api, keys, proxy, webhook
from gateway import constants as c
from gateway.auth import authenticate
from gateway.clients import ApiClient, ClientRegistry
from gateway.cluster import Replica
from gateway.config import Config
from gateway.delivery import RetryBudget, Worker
from gateway.egress import parse_networks
from gateway.errors import StartupError
from gateway.flood import FloodController, FloodLimits
from gateway.guards import RateLimiter, SignatureVerifier
from gateway.http import json_errors
from gateway.inbound import build_dispatcher
from gateway.inlets import receiver as inlets
from gateway.listener import connection_guard
from gateway.media.service import MediaService
from gateway.media.store import MediaStore
from gateway.media.store_disk import DiskMediaStore
from gateway.media.store_pg import PgMediaStore
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.questions import Questions
from gateway.queue.base import Queue
from gateway.queue.memory import MemoryQueue
from gateway.queue.postgres import PostgresQueue
from gateway.queue.sqlite import SqliteQueue
from gateway.redact import redact
from gateway.retention import Pruner
from gateway.services import ServiceCaller
from gateway.telegram import create_bot

logger = logging.getLogger(__name__)


def create_app(
    config: Config, *, queue: Queue | None = None, extra_clients: Sequence[ApiClient] = ()
) -> web.Application:
    """Build the gateway's `web.Application` from a loaded configuration.

    Start-up (`cleanup_ctx`) opens the queue, checks the bot token with getMe and starts the
    worker; shutdown stops the worker (in-flight sends finish or go back to the queue), then
    closes the queue and the Bot API session. Registering the webhook is `server.serve`'s job,
    once the HTTPS listener is up.
    """
    app = web.Application(
        middlewares=[json_errors, connection_guard, authenticate],
        client_max_size=config.server.body_limit,
    )
    app[keys.CONFIG] = config
    app[keys.CLIENTS] = ClientRegistry(config.clients_path, extra_clients)
    app[keys.QUEUE] = queue or _make_queue(config)
    # On PostgreSQL the limit is shared: a client cannot multiply it by spreading requests.
    store = app[keys.QUEUE]
    app[keys.RATE_LIMITER] = RateLimiter(shared=store if isinstance(store, PostgresQueue) else None)
    app[keys.BOT] = create_bot(
        config.bot_token.reveal(), config.telegram.api_base, config.telegram.request_timeout
    )
    app[keys.SIGNATURES] = SignatureVerifier(app[keys.QUEUE])
    app[keys.WEBHOOK] = keys.WebhookStatus()
    flood = FloodController(
        FloodLimits(
            global_per_second=config.flood.global_per_second,
            chat_per_second=config.flood.chat_per_second,
            group_per_minute=config.flood.group_per_minute,
            paid_per_second=config.flood.paid_per_second if config.flood.paid_broadcast else None,
        )
    )
    app[keys.FLOOD] = flood
    budget = RetryBudget(config.delivery.max_attempts, config.delivery.max_age)
    app[keys.METRICS] = Metrics()
    app[keys.METRICS].watch_paid_broadcast(flood)
    app[keys.WORKER] = Worker(
        app[keys.QUEUE], app[keys.BOT], flood, budget, hooks=app[keys.METRICS]
    )
    app[keys.OUTBOX] = Outbox(app[keys.QUEUE], app[keys.WORKER])
    app[keys.MEDIA] = MediaService(
        _media_store(config, app[keys.QUEUE]), config.media, app[keys.METRICS].registry
    )
    app[keys.WORKER].use_media(app[keys.MEDIA])
    services = ServiceCaller(
        {route.command: route for route in config.routes},
        app[keys.OUTBOX],
        config.callback_secret.reveal(),
        parse_networks(config.server.callback_allowed_networks),
    )
    app[keys.SERVICES] = services
    app[keys.WORKER].use_services(services, services.tell_user)
    app[keys.QUESTIONS] = Questions(
        app[keys.QUEUE],
        app[keys.OUTBOX],
        app[keys.WORKER],
        config.allowed_users,
        config.delivery.max_attempts,
    )
    app[keys.DISPATCHER] = build_dispatcher(
        app[keys.OUTBOX],
        config.allowed_users,
        config.telegram.refusal_text,
        config.routes,
        app[keys.QUESTIONS],
    )
    app[keys.PRUNER] = Pruner(
        app[keys.QUEUE], config.queue.retention, on_pruned=app[keys.METRICS].pruned.inc
    )
    store = app[keys.QUEUE]
    if isinstance(store, PostgresQueue):
        address = f"{config.server.host}:{config.server.port}"
        app[keys.REPLICA] = Replica(
            config.queue_dsn.reveal(), store, app[keys.WORKER], address, flood=flood
        )
    delivery = _leadership_task if keys.REPLICA in app else _worker_task
    app.cleanup_ctx.extend(
        [
            _api_clients,
            _bot_session,
            _queue_storage,
            _storage_watch,
            _media_files,
            _service_calls,
            delivery,
            _expiry_task,
            _retention_task,
        ]
    )
    inlets.install(app)
    proxy.install(app, config)
    webhook.add_routes(app, config.telegram.webhook_path)
    api.add_routes(app)
    return app


def _make_queue(config: Config) -> Queue:
    if config.queue.backend == "memory":
        return MemoryQueue()
    if config.queue.backend == "postgres":
        return PostgresQueue(config.queue_dsn.reveal())
    return SqliteQueue(config.queue_path)


def _media_store(config: Config, queue: Queue) -> MediaStore:
    """Files where every replica that may send them can read them: in PostgreSQL when the
    queue is there, else in `[media] dir` on this machine's disk."""
    if isinstance(queue, PostgresQueue):
        return PgMediaStore(queue)
    return DiskMediaStore(config.media_dir)


async def _api_clients(app: web.Application) -> AsyncIterator[None]:
    """Load the API clients, then watch their file so changes apply without a restart."""
    registry = app[keys.CLIENTS]
    registry.load()
    if not registry.clients:
        logger.warning(
            "no API clients in %s: every API call will be refused; "
            "create one with `gateway token add NAME`",
            registry.path,
        )

    async def watch() -> None:
        while True:
            await asyncio.sleep(c.CLIENTS_RELOAD_SECONDS)
            registry.reload_if_changed()

    async with _background(watch(), "api clients watcher"):
        yield


async def _bot_session(app: web.Application) -> AsyncIterator[None]:
    bot = app[keys.BOT]
    try:
        me = await bot.me()
    except TelegramUnauthorizedError:
        await bot.session.close()
        raise StartupError("Telegram refused the bot token (401 Unauthorized)") from None
    except AiogramError as exc:
        await bot.session.close()
        raise StartupError(f"getMe failed: {redact(str(exc))}") from None
    app[keys.WEBHOOK].bot = me
    logger.info("bot @%s (id %d) ready", me.username, me.id)
    yield
    await bot.session.close()


async def _queue_storage(app: web.Application) -> AsyncIterator[None]:
    queue = app[keys.QUEUE]
    await queue.open()
    yield
    await queue.close()


async def _storage_watch(app: web.Application) -> AsyncIterator[None]:
    """Look at the queue's storage now and then: often while it is in trouble (that is how
    trouble clears), seldom otherwise (a database file deleted under us)."""
    queue = app[keys.QUEUE]

    async def watch() -> None:
        idle = 0.0
        while True:
            # Every probe interval, so trouble that starts meanwhile is probed within one.
            await asyncio.sleep(c.STORAGE_PROBE_SECONDS)
            idle += c.STORAGE_PROBE_SECONDS
            if queue.problem() is None and idle < c.STORAGE_CHECK_SECONDS:
                continue
            idle = 0.0
            try:
                await queue.check()
            except Exception:  # the watch must outlive any one bad look
                logger.exception("checking the queue's storage failed")

    async with _background(watch(), "storage watch"):
        yield


async def _media_files(app: web.Application) -> AsyncIterator[None]:
    """The media store, and the task deleting files no command refers to any more."""
    media = app[keys.MEDIA]
    await media.open()
    async with _background(media.run_collector(app[keys.QUEUE]), "media collector"):
        yield
    await media.close()


async def _service_calls(app: web.Application) -> AsyncIterator[None]:
    services = app[keys.SERVICES]
    await services.open()
    yield
    await services.close()


async def _expiry_task(app: web.Application) -> AsyncIterator[None]:
    """Questions past their timeout become `expired`."""
    async with _background(app[keys.QUESTIONS].run_expiry(), "question expiry"):
        yield


async def _retention_task(app: web.Application) -> AsyncIterator[None]:
    """Final commands older than `[queue] retention` are deleted (stopped before the queue)."""
    async with _background(app[keys.PRUNER].run(), "retention"):
        yield


async def _worker_task(app: web.Application) -> AsyncIterator[None]:
    worker = app[keys.WORKER]
    await worker.prepare()
    async with _background(worker.run(), "queue worker"):
        yield
    await worker.stop()


async def _leadership_task(app: web.Application) -> AsyncIterator[None]:
    """Replicas on PostgreSQL: deliver only while this one leads (gateway/cluster/)."""
    async with _background(app[keys.REPLICA].leadership.run(), "leadership"):
        yield


@asynccontextmanager
async def _background(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `coro` as a task for the block; cancel it, and wait for it, at the end."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
