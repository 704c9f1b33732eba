"""Configuration: a TOML file, environment overrides and the secrets files, read once.

`load_config` is called once by the CLI. Every key has a default, so the file is optional.
Environment variables `GATEWAY_<SECTION>_<KEY>` override the file, and `GATEWAY_BOT_TOKEN`
overrides the token file. Every mistake raises `ConfigError` with one line naming the file, key
or variable at fault.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import configcheck
from gateway import constants as c
from gateway.chatdefaults import ChatDefault, parse_chat_defaults
from gateway.configvalues import (
    Duration,
    KeyPermissions,
    LongText,
    QueueBackend,
    UploadCertificate,
    coerce,
    read_toml,
    resolve,
)
from gateway.errors import ConfigError
from gateway.inlets.config import Inlet, parse_inlets
from gateway.routes import Route, parse_routes
from gateway.secretfiles import (
    ENV_TOKEN,
    Secret,
    check_permissions,
    read_allowed_users,
    read_or_create_secret,
    read_token,
    read_webhook_secret,
)

logger = logging.getLogger(__name__)

ENV_PREFIX = "GATEWAY_"
ENV_CONFIG = "GATEWAY_CONFIG"


@dataclass(frozen=True)
class ServerSettings:
    """`[server]`: where the HTTPS listener binds and how Telegram reaches it."""

    host: str = c.DEFAULT_HOST
    port: int = c.DEFAULT_PORT
    #: The HTTPS URL Telegram uses to reach this server (host and port as seen from outside).
    #: Empty: `https://<host>:<port>` in sandbox mode (127.0.0.1 for a wildcard host);
    #: required with a real bot token.
    public_url: str = ""
    #: Empty: `config/secrets/certificate.pem` when present (the original layout), else
    #: `certs/certificate.pem`; likewise `private_key`.
    certificate: str = ""
    private_key: str = ""
    body_limit: int = c.DEFAULT_BODY_LIMIT
    #: The API clients (hashed tokens, scopes); managed with `gateway token`.
    clients_file: str = c.DEFAULT_CLIENTS_FILE
    #: A private key or secrets file (bot token, clients file, webhook, callback and route
    #: secrets) readable by group or others: "refuse" to start, or "warn" and go on.
    key_permissions: KeyPermissions = "refuse"
    #: Key that signs what the gateway POSTs to `expect_reply.callback_url` (generated);
    #: each API client's callbacks are signed with a key derived from it for that client.
    callback_secret_file: str = c.DEFAULT_CALLBACK_SECRET_FILE
    #: The only networks (CIDRs) a client's `callback_url` may point into; empty: no callbacks.
    callback_allowed_networks: tuple[str, ...] = ()
    #: False: plain HTTP for a reverse proxy that terminates TLS (loopback unless `host` is
    #: set explicitly); no certificate of the gateway's own.
    tls: bool = True
    #: Seconds a client has for the TLS handshake, for sending a request's head (line and
    #: headers), for sending its body; and how long an idle keep-alive connection stays open.
    handshake_timeout: float = c.DEFAULT_HANDSHAKE_TIMEOUT
    head_timeout: float = c.DEFAULT_HEAD_TIMEOUT
    body_timeout: float = c.DEFAULT_BODY_TIMEOUT
    idle_timeout: float = c.DEFAULT_IDLE_TIMEOUT
    #: Concurrent client connections; 0: the open-file limit minus a reserve for outbound calls.
    max_connections: int = 0


@dataclass(frozen=True)
class TelegramSettings:
    """`[telegram]`: the Bot API, the bot's token, its users and its webhook."""

    api_base: str = c.TELEGRAM_API_BASE
    token_file: str = c.DEFAULT_TOKEN_FILE
    allowed_users_file: str = c.DEFAULT_ALLOWED_USERS_FILE
    webhook_path: str = c.DEFAULT_WEBHOOK_PATH
    secret_token_file: str = c.DEFAULT_SECRET_TOKEN_FILE
    max_connections: int = c.WEBHOOK_DEFAULT_MAX_CONNECTIONS
    drop_pending_updates: bool = False
    #: Sent to users who are not allowed; empty means they get no reply at all.
    refusal_text: str = ""
    #: Accept webhook calls only from `webhook_allowed_networks` (Telegram's published ranges
    #: when empty).
    webhook_ip_allowlist: bool = False
    webhook_allowed_networks: tuple[str, ...] = ()
    #: Reverse proxies whose X-Forwarded-For is believed (CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    #: Upload the certificate with setWebhook: "auto" only a self-signed one the gateway
    #: serves itself (never with tls = false), "always" the configured certificate file,
    #: "never".
    upload_certificate: UploadCertificate = "auto"
    #: Seconds a Bot API call may take before it is abandoned and retried. Shorter: a stalled
    #: Telegram is noticed sooner, but a send it was slow to answer may be sent twice; longer:
    #: fewer such duplicates, and a stall holds its chat for longer.
    request_timeout: float = c.BOT_API_TIMEOUT_SECONDS


@dataclass(frozen=True)
class QueueSettings:
    """`[queue]`: where accepted commands wait for delivery."""

    backend: QueueBackend = "sqlite"
    path: str = c.DEFAULT_QUEUE_PATH
    #: How long a final command (sent, failed, answered, expired) is kept after it became
    #: final; then it is deleted and its id answers 404. Idempotency keys are honoured for
    #: their 24 h whatever this says.
    retention: Duration = c.DEFAULT_RETENTION_SECONDS
    #: The `postgres` backend's database, `postgresql://user@host:port/db`. It may hold a
    #: password: prefer `dsn_file` (or GATEWAY_QUEUE_DSN) to keep it out of the config file.
    dsn: str = ""
    #: A secrets file (mode 0600) holding the DSN; used when `dsn` is empty.
    dsn_file: str = ""

    def __repr__(self) -> str:  # the DSN may carry a password
        dsn = "'***'" if self.dsn else "''"
        return (
            f"QueueSettings(backend={self.backend!r}, path={self.path!r}, "
            f"retention={self.retention!r}, dsn={dsn}, dsn_file={self.dsn_file!r})"
        )


@dataclass(frozen=True)
class DeliverySettings:
    """`[delivery]`: the retry budget and what happens to text over Telegram's limit."""

    max_attempts: int = 8
    #: Seconds after acceptance past which a command is no longer retried.
    max_age: float = 3600.0
    long_text: LongText = "split"
    #: The longest text accepted, in characters (longer: 413 naming the field).
    max_text_length: int = c.DEFAULT_MAX_TEXT_LENGTH


@dataclass(frozen=True)
class FloodSettings:
    """`[flood]`: the gateway's own send limits, kept under Telegram's."""

    global_per_second: float = c.TELEGRAM_GLOBAL_PER_SECOND
    chat_per_second: float = c.TELEGRAM_CHAT_PER_SECOND
    group_per_minute: int = c.TELEGRAM_GROUP_PER_MINUTE
    #: Paid broadcast (Bot API 7.11): sends above `global_per_second` carry
    #: `allow_paid_broadcast` and cost 0.1 Star each, from the bot's balance.
    paid_broadcast: bool = False
    #: The ceiling of all sends with paid broadcast on, free ones included (Telegram: 1000).
    paid_per_second: float = c.TELEGRAM_PAID_PER_SECOND


@dataclass(frozen=True)
class MediaSettings:
    """`[media]`: files, photos and albums (see README "Files and topics")."""

    #: Where accepted files are kept until retention deletes their commands.
    dir: str = c.DEFAULT_MEDIA_DIR
    #: The largest file accepted (Telegram: 50 MB); larger → 413 naming this key.
    max_upload_bytes: int = c.TELEGRAM_MAX_UPLOAD_BYTES
    #: The largest photo accepted (Telegram: 10 MB).
    max_photo_bytes: int = c.TELEGRAM_MAX_PHOTO_BYTES
    #: Networks (CIDRs) the gateway may fetch `"fetch": true` URLs from; empty: no fetching.
    fetch_allowed_networks: tuple[str, ...] = ()
    #: Seconds a gateway fetch may take.
    fetch_timeout: float = c.DEFAULT_FETCH_TIMEOUT_SECONDS
    #: Bytes of uploads to Telegram in flight at once.
    max_bytes_in_flight: int = c.DEFAULT_MEDIA_BYTES_IN_FLIGHT


@dataclass(frozen=True)
class SandboxSettingsSection:
    """`[sandbox]`: the in-process Telegram emulator used when no bot token is configured."""

    host: str = c.SANDBOX_HOST
    port: int = c.SANDBOX_PORT
    demo_user: int = c.SANDBOX_DEMO_USER


SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "telegram": TelegramSettings,
    "queue": QueueSettings,
    "delivery": DeliverySettings,
    "flood": FloodSettings,
    "sandbox": SandboxSettingsSection,
    "media": MediaSettings,
}


@dataclass(frozen=True)
class Config:
    """Everything the gateway needs, resolved: settings plus what the secrets files hold."""

    server: ServerSettings
    telegram: TelegramSettings
    queue: QueueSettings
    delivery: DeliverySettings
    flood: FloodSettings
    sandbox: SandboxSettingsSection
    #: None means no bot token is configured anywhere: sandbox mode.
    token: Secret | None
    allowed_users: frozenset[int]
    secret_token: Secret
    public_url: str
    certificate_path: Path
    private_key_path: Path
    queue_path: Path
    clients_path: Path
    #: The `postgres` backend's DSN (from `dsn`, `dsn_file` or GATEWAY_QUEUE_DSN).
    queue_dsn: Secret = field(default_factory=lambda: Secret(""))
    #: Bot commands dispatched to internal services (`[[routes]]`).
    routes: tuple[Route, ...] = ()
    #: Other tools' webhooks turned into messages (`[[inlets]]`, gateway/inlets/).
    inlets: tuple[Inlet, ...] = ()
    #: Key that signs answers POSTed to `callback_url`s.
    callback_secret: Secret = field(default_factory=lambda: Secret(""))
    source: str = field(default="defaults")
    #: True when the gateway runs against its built-in sandbox (no token configured).
    sandbox_mode: bool = False
    media: MediaSettings = field(default_factory=MediaSettings)
    media_dir: Path = Path(c.DEFAULT_MEDIA_DIR)
    #: Per-chat defaults of sends (`[[chat_defaults]]`: topic, silence).
    chat_defaults: tuple[ChatDefault, ...] = ()

    @property
    def bot_token(self) -> Secret:
        """The token the Bot API client uses: the configured one, or the sandbox's."""
        return self.token or Secret(c.SANDBOX_TOKEN)

    @property
    def webhook_url(self) -> str:
        """The URL registered with setWebhook."""
        return self.public_url.rstrip("/") + self.telegram.webhook_path


def load_config(
    path: str | Path | None,
    env: Mapping[str, str],
    *,
    base_dir: Path | None = None,
) -> Config:
    """Read the TOML file (optional), apply environment overrides and read the secrets files.

    `path=None` means the default `config/gateway.toml`, which may be absent. Relative paths,
    in the file or in the environment, are relative to `base_dir` (the working directory).
    Generates and saves the webhook secret when its file does not exist yet.
    """
    base = base_dir or Path.cwd()
    explicit = path is not None or ENV_CONFIG in env
    cfg_path = Path(path or env.get(ENV_CONFIG) or c.DEFAULT_CONFIG_PATH)
    source = str(cfg_path)
    raw = read_toml(resolve(base, str(cfg_path)), source, required=explicit)
    if not raw:
        source = "defaults"
    raw_server = raw.get("server")
    host_given = f"{ENV_PREFIX}SERVER_HOST" in env or (
        isinstance(raw_server, dict) and "host" in raw_server
    )
    sections = {
        name: _build_section(name, cls, raw.pop(name, {}), env, source)
        for name, cls in SECTIONS.items()
    }
    policy = sections["server"].key_permissions
    routes = parse_routes(raw.pop("routes", []), base, source, policy)
    chat_defaults = parse_chat_defaults(raw.pop("chat_defaults", []), source)

    inlets = parse_inlets(raw.pop("inlets", []), base, source, policy)
    if raw:
        unknown = sorted(raw)[0]
        raise ConfigError(f"{source}: unknown section or key '{unknown}'")
    _check_unknown_env(env)

    server: ServerSettings = sections["server"]
    if not server.tls and not host_given:
        # Plain HTTP is for a proxy on this machine: never on every interface by default.
        server = dataclasses.replace(server, host=c.SANDBOX_HOST)
    telegram: TelegramSettings = sections["telegram"]
    sandbox: SandboxSettingsSection = sections["sandbox"]
    configcheck.validate(server, telegram)
    configcheck.validate_delivery(sections["delivery"])
    configcheck.validate_media(sections["media"])
    configcheck.validate_queue(sections["queue"])
    configcheck.validate_flood(sections["flood"])

    token = read_token(
        resolve(base, telegram.token_file),
        telegram.token_file,
        telegram.token_file == c.DEFAULT_TOKEN_FILE,
        env,
        policy,
    )
    if token is None and not host_given:
        # Sandbox mode is a demo whose API token is printed on the console: loopback only
        # unless the operator names an address.
        server = dataclasses.replace(server, host=c.SANDBOX_HOST)
    allowed = read_allowed_users(
        resolve(base, telegram.allowed_users_file),
        telegram.allowed_users_file,
        sandbox.demo_user if token is None else None,
    )
    secret = read_webhook_secret(
        resolve(base, telegram.secret_token_file), telegram.secret_token_file, policy
    )
    # The clients file holds signing secrets; the gateway reads it at start and on changes.
    check_permissions(resolve(base, server.clients_file), server.clients_file, policy)
    public_url = configcheck.public_url(server, sandbox_mode=token is None)
    if telegram.upload_certificate == "always" and not server.tls and not server.certificate:
        raise ConfigError(
            '[telegram] upload_certificate = "always" with tls = false needs [server] '
            "certificate: the proxy's certificate file to upload"
        )
    cert, key = _certificate_paths(base, server)
    return Config(
        server=server,
        telegram=telegram,
        queue=sections["queue"],
        delivery=sections["delivery"],
        flood=sections["flood"],
        sandbox=sandbox,
        token=token,
        allowed_users=allowed,
        secret_token=secret,
        public_url=public_url,
        certificate_path=cert,
        private_key_path=key,
        queue_path=resolve(base, sections["queue"].path),
        clients_path=resolve(base, server.clients_file),
        queue_dsn=_queue_dsn(base, sections["queue"], source, policy),
        routes=routes,
        inlets=inlets,
        callback_secret=Secret(
            read_or_create_secret(
                resolve(base, server.callback_secret_file),
                server.callback_secret_file,
                "callback signing key",
                policy,
            )
        ),
        source=source,
        sandbox_mode=token is None,
        media=sections["media"],
        media_dir=resolve(base, sections["media"].dir),
        chat_defaults=chat_defaults,
    )


def _queue_dsn(base: Path, queue: QueueSettings, source: str, policy: str) -> Secret:
    """The postgres backend's DSN: `dsn` (or GATEWAY_QUEUE_DSN), else the `dsn_file`."""
    if queue.backend != "postgres":
        return Secret("")
    where = f"{source}: [queue] dsn"
    dsn = queue.dsn.strip()
    if not dsn and queue.dsn_file:
        where = f"[queue] dsn_file {queue.dsn_file}"
        path = resolve(base, queue.dsn_file)
        check_permissions(path, queue.dsn_file, policy)
        try:
            dsn = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"{where}: cannot read the DSN file") from None
    if not dsn:
        raise ConfigError(
            f'{source}: [queue] backend = "postgres" needs dsn, dsn_file or GATEWAY_QUEUE_DSN '
            "(postgresql://user@host:port/database)"
        )
    if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        # Never echo the value: it may hold a password.
        raise ConfigError(f"{where}: not a PostgreSQL URL (expected postgresql://...)")
    return Secret(dsn)


def clients_file_of(path: str | None, env: Mapping[str, str]) -> Path:
    """The API clients file as `gateway run` would use it, without reading any secret."""
    return path_setting(path, env, "server", "clients_file")


def path_setting(path: str | None, env: Mapping[str, str], section: str, key: str) -> Path:
    """One path setting as `gateway run` would resolve it, without reading any secret file.

    `GATEWAY_<SECTION>_<KEY>` wins, then the config file (`path`, `$GATEWAY_CONFIG` or the
    default one when present), then the default; relative to the working directory.
    """
    base = Path.cwd()
    env_name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
    if env_name in env:
        return resolve(base, env[env_name])
    explicit = path is not None or ENV_CONFIG in env
    cfg_path = str(path or env.get(ENV_CONFIG) or c.DEFAULT_CONFIG_PATH)
    table = read_toml(resolve(base, cfg_path), cfg_path, required=explicit).get(section, {})
    default = getattr(SECTIONS[section](), key)
    value = table.get(key, default) if isinstance(table, dict) else None
    if not isinstance(value, str):
        raise ConfigError(f"{cfg_path}: [{section}] {key} must be a string, not {value!r}")
    return resolve(base, value)


def resolve_path(base: Path, value: str) -> Path:
    """A configured path: absolute as given, otherwise relative to the working directory."""
    return resolve(base, value)


def _build_section(
    name: str, cls: type[Any], values: Any, env: Mapping[str, str], source: str
) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: '{name}' must be a table ([{name}])")
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key [{name}] {key}")
    for key, f in fields.items():
        env_name = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if env_name in env:
            kwargs[key] = coerce(f, env[env_name], env_name, from_env=True)
        elif key in values:
            kwargs[key] = coerce(f, values[key], f"{source}: [{name}] {key}", from_env=False)
    return cls(**kwargs)


def _check_unknown_env(env: Mapping[str, str]) -> None:
    known = {ENV_TOKEN, ENV_CONFIG}
    for name, cls in SECTIONS.items():
        known.update(
            f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}" for f in dataclasses.fields(cls)
        )
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in known:
            raise ConfigError(f"environment variable {var} is not a known setting")


def _certificate_paths(base: Path, server: ServerSettings) -> tuple[Path, Path]:
    if server.certificate or server.private_key:
        if not server.tls and server.certificate and not server.private_key:
            # Only uploaded (upload_certificate = "always"): its key stays with the proxy.
            cert = resolve(base, server.certificate)
            return cert, cert.with_name(c.PRIVATE_KEY_FILENAME)
        if not (server.certificate and server.private_key):
            missing = "private_key" if server.certificate else "certificate"
            raise ConfigError(f"[server] {missing} must be set together with the other")
        return resolve(base, server.certificate), resolve(base, server.private_key)
    legacy = resolve(base, c.LEGACY_CERTIFICATE), resolve(base, c.LEGACY_PRIVATE_KEY)
    if legacy[0].exists() or legacy[1].exists():
        return legacy
    cert_dir = resolve(base, c.DEFAULT_CERT_DIR)
    return cert_dir / c.CERTIFICATE_FILENAME, cert_dir / c.PRIVATE_KEY_FILENAME
