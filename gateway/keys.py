"""Typed application state: everything the handlers share, declared in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiogram import Bot, Dispatcher
from aiogram.types import User
from aiohttp import web

from gateway.clients import ClientRegistry
from gateway.cluster import Replica
from gateway.config import Config
from gateway.delivery import Worker
from gateway.flood import FloodController
from gateway.guards import RateLimiter, SignatureVerifier
from gateway.media.service import MediaService
from gateway.metrics import Metrics
from gateway.outbox import Outbox
from gateway.questions import Questions
from gateway.queue.base import Queue
from gateway.retention import Pruner
from gateway.services import ServiceCaller


@dataclass
class WebhookStatus:
    """Whether Telegram has accepted our webhook, and the last problem if not."""

    registered: bool = False
    error: str | None = None
    bot: User | None = field(default=None)


CONFIG = web.AppKey("config", Config)
BOT = web.AppKey("bot", Bot)
QUEUE = web.AppKey("queue", Queue)
WORKER = web.AppKey("worker", Worker)
FLOOD = web.AppKey("flood", FloodController)
OUTBOX = web.AppKey("outbox", Outbox)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
WEBHOOK = web.AppKey("webhook", WebhookStatus)
METRICS = web.AppKey("metrics", Metrics)
CLIENTS = web.AppKey("clients", ClientRegistry)
SIGNATURES = web.AppKey("signatures", SignatureVerifier)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
SERVICES = web.AppKey("services", ServiceCaller)
QUESTIONS = web.AppKey("questions", Questions)
MEDIA = web.AppKey("media", MediaService)
PRUNER = web.AppKey("pruner", Pruner)
#: Present on the postgres backend: this replica's part in the election (gateway/cluster/).
REPLICA = web.AppKey("replica", Replica)
