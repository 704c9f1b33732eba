"""Running the gateway: the HTTPS listener, webhook registration, and sandbox mode.

`serve(config)` is what `gateway run` and the end-to-end tests use: it checks the certificate,
starts the app over TLS, registers the webhook with Telegram once the listener is up, and on
exit stops accepting, lets the worker finish or put back in-flight work, and closes the session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.exceptions import AiogramError, TelegramRetryAfter
from aiogram.methods import SetWebhook
from aiogram.types import BotCommand, BufferedInputFile
from aiohttp import web

from gateway import keys
from gateway.accesslog import ClientAccessLogger
from gateway.app import create_app
from gateway.certs import (
    CertificateInfo,
    certificate_matches_host,
    check_key_permissions,
    load_certificate_pair,
    server_ssl_context,
)
from gateway.clients import ApiClient
from gateway.config import Config
from gateway.constants import SET_WEBHOOK_ATTEMPTS, SET_WEBHOOK_MAX_RETRY_AFTER_SECONDS
from gateway.errors import CertificateError, StartupError
from gateway.inbound import allowed_updates, bot_commands
from gateway.listener import BoundedSite, connection_limits
from gateway.proxy import certificate_to_upload
from gateway.redact import redact
from gateway.sandbox import SandboxAccessLogger, SandboxSettings, create_sandbox_app

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 10.0


async def set_webhook_honouring_retry_after(bot: Bot, call: SetWebhook) -> None:
    """setWebhook, waiting out a 429 (Telegram allows one call a second: a gateway restarted
    at once gets `retry after 1`) a bounded number of times; other errors are raised."""
    for attempt in range(1, SET_WEBHOOK_ATTEMPTS + 1):
        try:
            await bot(call)
            return
        except TelegramRetryAfter as exc:
            if attempt == SET_WEBHOOK_ATTEMPTS or (
                exc.retry_after > SET_WEBHOOK_MAX_RETRY_AFTER_SECONDS
            ):
                raise
            logger.info(
                "setWebhook: Telegram asks to retry after %s s (attempt %d of %d)",
                exc.retry_after,
                attempt,
                SET_WEBHOOK_ATTEMPTS,
            )
            await asyncio.sleep(exc.retry_after)


def check_certificate(config: Config) -> CertificateInfo:
    """Load the certificate pair and refuse what Telegram (or an attacker) would exploit."""
    info = load_certificate_pair(config.certificate_path, config.private_key_path)
    problem = check_key_permissions(config.private_key_path)
    if problem and config.server.key_permissions == "warn":
        logger.warning('%s (key_permissions = "warn": starting anyway)', problem)
    elif problem:
        raise CertificateError(f"{problem} (chmod 600 it, or set [server] key_permissions)")
    host = urlsplit(config.public_url).hostname or ""
    if not certificate_matches_host(info, host):
        names = ", ".join(info.hosts) or "no names"
        raise CertificateError(
            f"{config.certificate_path}: certificate is for {names}, not for public_url host "
            f"{host} (Telegram would refuse to deliver); generate one with "
            f"scripts/gen_cert.sh --host {host} --out {config.certificate_path.parent} --force"
        )
    return info


async def register_webhook(app: web.Application, certificate: bytes | None) -> None:
    """setWebhook: our URL, our secret, and `certificate` (PEM) when one is to be uploaded."""
    config = app[keys.CONFIG]
    bot = app[keys.BOT]
    status = app[keys.WEBHOOK]
    upload = BufferedInputFile(certificate, "certificate.pem") if certificate else None
    call = SetWebhook(
        url=config.webhook_url,
        certificate=upload,
        secret_token=config.secret_token.reveal(),
        max_connections=config.telegram.max_connections,
        allowed_updates=allowed_updates(),
        drop_pending_updates=config.telegram.drop_pending_updates,
    )
    try:
        await set_webhook_honouring_retry_after(bot, call)
    except AiogramError as exc:
        status.error = redact(str(exc))
        raise StartupError(
            f"Telegram refused the webhook {config.webhook_url}: {status.error}"
        ) from None
    status.registered, status.error = True, None
    logger.info("webhook set to %s", config.webhook_url)
    try:
        await bot.set_my_commands(
            [BotCommand.model_validate(entry) for entry in bot_commands(config.routes)]
        )
    except AiogramError as exc:  # the menu is a convenience: not worth refusing to start
        logger.warning("could not set the bot's command menu: %s", redact(str(exc)))


@asynccontextmanager
async def serve(
    config: Config, extra_clients: Sequence[ApiClient] = ()
) -> AsyncIterator[web.Application]:
    """Run the gateway until the `async with` block ends."""
    certificate = check_certificate(config) if config.server.tls else None
    upload = certificate_to_upload(config, certificate)
    app = create_app(config, extra_clients=extra_clients)
    limits = connection_limits(config.server)
    runner = web.AppRunner(
        app,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        access_log_class=ClientAccessLogger,
        keepalive_timeout=limits.idle_timeout,
    )
    try:
        await runner.setup()
        site = BoundedSite(
            runner,
            config.server.host,
            config.server.port,
            limits=limits,
            ssl_context=server_ssl_context(certificate) if certificate else None,
            registry=app[keys.METRICS].registry,
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}"
            ) from None
        logger.info(
            "listening on %s://%s:%d%s (at most %d connections)",
            "https" if certificate else "http",
            config.server.host,
            config.server.port,
            "" if certificate else " (tls = false: TLS is the reverse proxy's)",
            limits.max_connections,
        )
        if keys.REPLICA in app:  # on PostgreSQL only the leader registers it, once it leads
            await app[keys.REPLICA].use_registrar(lambda: register_webhook(app, upload))
        else:
            await register_webhook(app, upload)
        yield app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sandbox(config: Config, settings: SandboxSettings | None = None) -> AsyncIterator[str]:
    """Run the in-process sandbox; yields its base URL for `api_base`."""
    app = create_sandbox_app(settings or SandboxSettings())
    runner = web.AppRunner(app, access_log_class=SandboxAccessLogger)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.sandbox.host, config.sandbox.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot start the sandbox on {config.sandbox.host}:{config.sandbox.port}: "
                f"{exc.strerror} (set [sandbox] port)"
            ) from None
        yield f"http://{config.sandbox.host}:{config.sandbox.port}"
    finally:
        await runner.cleanup()


def with_api_base(config: Config, api_base: str) -> Config:
    """The same configuration, talking to another Bot API server."""
    return dataclasses.replace(
        config, telegram=dataclasses.replace(config.telegram, api_base=api_base)
    )
