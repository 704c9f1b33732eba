"""`gateway check`: what an operator runs after every change to a deployment.

Each check gives one line: its status, what it found and, when it is not ok, what to do. The
checks only read: the database is opened read-only (no lock beyond a reader's), Telegram is
asked with getMe and getWebhookInfo, nothing is registered or sent. Loading the configuration
generates the webhook and callback secrets when missing, exactly as `gateway run` would.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
from aiogram.exceptions import AiogramError, TelegramUnauthorizedError

from gateway import constants as c
from gateway.certs import certificate_matches_host, check_key_permissions, load_certificate_pair
from gateway.clients import read_clients
from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.ops.backup import open_read_only
from gateway.ops.firstrun import needs_certificate
from gateway.queue.pg_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from gateway.queue.pg_schema import VERSION_TABLE as PG_VERSION_TABLE
from gateway.queue.postgres import UNAVAILABLE, PostgresQueue
from gateway.queue.schema import COMMANDS_TABLE, MIGRATIONS
from gateway.redact import redact
from gateway.telegram import create_bot

Status = Literal["ok", "warn", "fail", "skip"]
#: A certificate closer than this to its end is worth a warning.
CERT_WARN_DAYS = 30
#: A webhook delivery error younger than this is reported as a warning.
WEBHOOK_ERROR_RECENT_SECONDS = 3600
#: Updates waiting at Telegram beyond this are worth a warning.
PENDING_UPDATES_WARN = 100


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix and self.status in ("warn", "fail") else ""
        return f"{self.status.upper():<4} {self.name}: {self.detail}{fix}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


async def run_checks(path: str | None, env: Mapping[str, str]) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        return [Check("config", "fail", str(exc), "fix the file or variable it names")]
    mode = "sandbox mode (no bot token)" if config.sandbox_mode else "bot token set"
    checks = [Check("config", "ok", f"{config.source}, {mode}, public_url {config.public_url}")]
    checks += certificate_checks(config)
    checks += await telegram_checks(config)
    if config.queue.backend == "postgres":
        checks.append(await postgres_check(config))
    else:
        checks.append(database_check(config))
    checks.append(clients_check(config))
    from gateway.ops.inletcheck import inlet_checks  # it builds on Check, defined here

    checks += await inlet_checks(config)
    return checks


def certificate_checks(config: Config) -> list[Check]:
    if not needs_certificate(config):
        return [Check("certificate", "skip", "tls = false: the reverse proxy holds it")]
    host = urlsplit(config.public_url).hostname or ""
    remake = f"scripts/gen_cert.sh --host {host} --out {config.certificate_path.parent} --force"
    try:
        info = load_certificate_pair(config.certificate_path, config.private_key_path)
    except ConfigError as exc:
        return [Check("certificate", "fail", str(exc), remake)]
    days = (info.not_after - datetime.now(UTC)).days
    kind = "self-signed" if info.self_signed else "CA-issued"
    names = ", ".join(info.hosts) or "no names"
    detail = f"{config.certificate_path}, {kind}, {days} days left, for {names}"
    if not certificate_matches_host(info, host):
        cert = Check("certificate", "fail", f"{detail}; not for public_url host {host}", remake)
    elif days < CERT_WARN_DAYS:
        cert = Check("certificate", "warn", detail, f"renew it: {remake}, then restart")
    else:
        cert = Check("certificate", "ok", detail)
    try:
        problem = check_key_permissions(config.private_key_path)
    except ConfigError as exc:
        problem = str(exc)
    key = (
        Check("private key", "fail", problem, f"chmod 600 {config.private_key_path}")
        if problem
        else Check("private key", "ok", f"{config.private_key_path}, readable by its owner only")
    )
    return [cert, key]


async def telegram_checks(config: Config) -> list[Check]:
    if config.sandbox_mode:
        why = "sandbox mode: no bot token to check"
        return [Check("token", "skip", why), Check("webhook", "skip", why)]
    bot = create_bot(config.bot_token.reveal(), config.telegram.api_base)
    token_file = config.telegram.token_file
    try:
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            fix = f"put the token @BotFather gave you in {token_file} (or GATEWAY_BOT_TOKEN)"
            fail = Check("token", "fail", "Telegram refused the bot token (401)", fix)
            return [fail, Check("webhook", "skip", "needs a valid token")]
        except (AiogramError, OSError) as exc:
            detail = f"getMe at {config.telegram.api_base} failed: {redact(str(exc))}"
            fix = "check the network path to [telegram] api_base"
            return [Check("token", "fail", detail, fix), Check("webhook", "skip", "no answer")]
        token = Check("token", "ok", f"bot @{me.username} (id {me.id})")
        try:
            info = await bot.get_webhook_info()
        except (AiogramError, OSError) as exc:
            detail = f"getWebhookInfo failed: {redact(str(exc))}"
            return [token, Check("webhook", "fail", detail, "try again; check api_base")]
    finally:
        await bot.session.close()
    return [
        token,
        webhook_check(
            config,
            info.url,
            info.pending_update_count,
            info.last_error_date,
            info.last_error_message,
        ),
    ]


def webhook_check(
    config: Config,
    url: str,
    pending: int,
    error_date: datetime | int | None,
    error_message: str | None,
) -> Check:
    if url != config.webhook_url:
        registered = url or "no webhook"
        return Check(
            "webhook",
            "fail",
            f"Telegram has {registered}, not {config.webhook_url}",
            "start the gateway (it registers the webhook at start-up) or fix public_url",
        )
    detail = f"{url}, {pending} update(s) pending"
    status: Status = "warn" if pending > PENDING_UPDATES_WARN else "ok"
    fix = "is the gateway running and reachable at public_url?" if pending else ""
    if error_date is not None:
        moment = error_date if isinstance(error_date, int) else error_date.timestamp()
        age = max(0, int(time.time() - moment))
        detail += f", last error {age} s ago: {error_message or '(no message)'}"
        if age < WEBHOOK_ERROR_RECENT_SECONDS:
            status = "warn"
            fix = "Telegram cannot deliver: check the listener, firewall and certificate"
    return Check("webhook", status, detail, fix)


def database_check(config: Config) -> Check:
    if config.queue.backend != "sqlite":
        return Check("database", "skip", f"backend {config.queue.backend}: nothing on disk")
    path = config.queue_path
    if not path.exists():
        writable = os.access(_existing_parent(path), os.W_OK)
        if writable:
            return Check("database", "ok", f"{path} does not exist yet (made at first start)")
        return Check("database", "fail", f"cannot create {path}", "make its directory writable")
    if not (os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK)):
        return Check(
            "database",
            "fail",
            f"{path} or its directory is not writable by this user",
            "run as the gateway's user, or fix the owner/permissions",
        )
    latest = max(MIGRATIONS)
    try:
        db = open_read_only(path)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            depth = 0
            if version:
                depth = int(
                    db.execute(
                        f"SELECT count(*) FROM {COMMANDS_TABLE} "
                        "WHERE status IN ('queued', 'sending')"
                    ).fetchone()[0]
                )
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check("database", "fail", f"{path}: {exc}", "restore it from a backup")
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    detail = f"{path}, schema {version}/{latest}, {depth} waiting, {size} bytes"
    if version > latest:
        return Check("database", "fail", detail, "made by a newer gateway: upgrade this one")
    return Check("database", "ok", detail)


async def postgres_check(config: Config) -> Check:
    """The postgres backend's database: reachable, at a schema this gateway knows (read only:
    the gateway migrates at start, `check` does not)."""
    queue = PostgresQueue(config.queue_dsn.reveal())
    where = queue.where
    try:
        conn = await asyncpg.connect(config.queue_dsn.reveal(), timeout=c.PG_CONNECT_TIMEOUT)
    except (*UNAVAILABLE, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        return Check("database", "fail", f"{where}: {exc}", "start it, or fix [queue] dsn")
    try:
        found = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", PG_VERSION_TABLE, timeout=c.PG_COMMAND_TIMEOUT
        )
        version = depth = 0
        if found:
            version = int(await conn.fetchval(f"SELECT max(version) FROM {PG_VERSION_TABLE}") or 0)
            depth = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM {COMMANDS_TABLE} WHERE status IN ('queued', 'sending')"
                )
            )
    except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
        return Check("database", "fail", f"{where}: {exc}", "check the user's privileges")
    finally:
        await conn.close()
    detail = f"{where}, schema {version}/{PG_SCHEMA_VERSION}, {depth} waiting"
    if version > PG_SCHEMA_VERSION:
        return Check("database", "fail", detail, "made by a newer gateway: upgrade this one")
    return Check("database", "ok", detail)


def clients_check(config: Config) -> Check:
    try:
        clients = read_clients(config.clients_path)
    except ConfigError as exc:
        return Check("api clients", "fail", str(exc), "fix the file, or gateway token add NAME")
    if clients:
        names = ", ".join(client.name for client in clients)
        return Check("api clients", "ok", f"{len(clients)} in {config.clients_path}: {names}")
    status: Status = "warn" if config.sandbox_mode else "fail"
    return Check(
        "api clients",
        status,
        f"none in {config.clients_path}: every API call would be refused",
        f"gateway token add NAME --file {config.clients_path}",
    )


def _existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")
