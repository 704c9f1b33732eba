"""Names, limits and defaults in one place.

Telegram's limits come from ../shared/telegram-bot-api.md (the Bot API documentation and the
FAQ); everything else is a default of this gateway.
"""

from __future__ import annotations

from typing import Final

# --- Telegram Bot API -------------------------------------------------------------------------
TELEGRAM_API_BASE: Final = "https://api.telegram.org"
MAX_MESSAGE_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
#: Telegram's server refuses a text or caption over 32 KiB of UTF-8 before parsing its markup
#: (`Client::get_formatted_text`: "text is too long"); the 4096/1024 limits apply after parsing.
MAX_TEXT_SOURCE_BYTES: Final = 1 << 15
MAX_CALLBACK_DATA_BYTES: Final = 64
WEBHOOK_PORTS: Final = frozenset({443, 80, 88, 8443})
WEBHOOK_MAX_CONNECTIONS_RANGE: Final = (1, 100)
WEBHOOK_DEFAULT_MAX_CONNECTIONS: Final = 40
#: setWebhook at start-up: tries in all when Telegram answers 429 (it allows one call a second),
#: and the longest retry_after worth waiting for instead of refusing to start.
SET_WEBHOOK_ATTEMPTS: Final = 5
SET_WEBHOOK_MAX_RETRY_AFTER_SECONDS: Final = 10
SECRET_TOKEN_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
SECRET_TOKEN_MAX_LENGTH: Final = 256
SECRET_TOKEN_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
#: Telegram's published webhook source ranges ("might change").
TELEGRAM_SOURCE_NETWORKS: Final = ("149.154.160.0/20", "91.108.4.0/22")
#: Update types the gateway handles; sent as setWebhook's allowed_updates.
HANDLED_UPDATE_TYPES: Final = ("message", "callback_query")

# Flood control, as Telegram's FAQ states it.
TELEGRAM_GLOBAL_PER_SECOND: Final = 30
TELEGRAM_CHAT_PER_SECOND: Final = 1
TELEGRAM_GROUP_PER_MINUTE: Final = 20
#: Paid broadcast (Bot API 7.11): up to 1000 messages/s with `allow_paid_broadcast`, 0.1 Star
#: for each message sent with it (counted in tenths of a Star to stay exact).
TELEGRAM_PAID_PER_SECOND: Final = 1000
PAID_BROADCAST_PARAM: Final = "allow_paid_broadcast"
PAID_STAR_TENTHS_PER_MESSAGE: Final = 1
#: What Telegram answers a paid send when the bot's Stars balance is too low (the MTProto error
#: name; the Bot API passes it on as `Bad Request: BALANCE_TOO_LOW`: our best reading, not seen
#: from Telegram, see docs/sandbox.md).
PAID_BALANCE_ERRORS: Final = ("BALANCE_TOO_LOW",)
#: After Telegram said the Stars ran out, sends stay at the free rate this long, then paid
#: sends are tried again (the balance may have been topped up).
PAID_FALLBACK_SECONDS: Final = 600.0

# --- Gateway defaults ---------------------------------------------------------------------------
DEFAULT_CONFIG_PATH: Final = "config/gateway.toml"
DEFAULT_HOST: Final = "0.0.0.0"
DEFAULT_PORT: Final = 8443
#: Listen addresses meaning "every interface": not an address anyone can connect to.
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})
DEFAULT_WEBHOOK_PATH: Final = "/telegram/webhook"
DEFAULT_TOKEN_FILE: Final = "config/secrets/bot_api.txt"
DEFAULT_ALLOWED_USERS_FILE: Final = "config/secrets/allowed_user.txt"
DEFAULT_SECRET_TOKEN_FILE: Final = "config/secrets/webhook_secret.txt"
DEFAULT_CLIENTS_FILE: Final = "config/secrets/api_clients.toml"
DEFAULT_CALLBACK_SECRET_FILE: Final = "config/secrets/callback_secret.txt"
#: How often the running gateway looks for changes of the clients file.
CLIENTS_RELOAD_SECONDS: Final = 2.0
#: The original version kept its certificate pair here; it is used when present.
LEGACY_CERTIFICATE: Final = "config/secrets/certificate.pem"
LEGACY_PRIVATE_KEY: Final = "config/secrets/key.pem"
DEFAULT_CERT_DIR: Final = "certs"
CERTIFICATE_FILENAME: Final = "certificate.pem"
PRIVATE_KEY_FILENAME: Final = "key.pem"
DEFAULT_CERT_DAYS: Final = 365
MAX_CERT_DAYS: Final = 36500
DEFAULT_BODY_LIMIT: Final = 1024 * 1024
DEFAULT_QUEUE_PATH: Final = "var/gateway.db"
#: Default of `[queue] retention`: final commands are kept this long (seconds), then deleted.
DEFAULT_RETENTION_SECONDS: Final = 7 * 86400.0
MIN_RETENTION_SECONDS: Final = 1.0

# --- Queue storage ------------------------------------------------------------------------------
#: Space kept in `<queue>.reserve` and given up when the disk fills, so the write-ahead log can
#: be checkpointed and truncated; also the size the log is truncated to after a checkpoint.
QUEUE_RESERVE_BYTES: Final = 4 * 1024 * 1024
#: How long a write waits for another process's lock on the database before giving up (503).
QUEUE_BUSY_TIMEOUT_SECONDS: Final = 2.0
#: How often healthy storage is looked at (vanished file, reserve), and troubled storage probed.
STORAGE_CHECK_SECONDS: Final = 5.0
STORAGE_PROBE_SECONDS: Final = 1.0
#: Retry-After of a 503 storage_unavailable.
STORAGE_RETRY_AFTER_SECONDS: Final = 2
#: The worker's longest wait between two tries to save an outcome while the storage is down.
STORAGE_BACKOFF_CAP_SECONDS: Final = 5.0
#: /healthz calls a chat held up once its oldest message has waited this long.
HELD_LANE_SECONDS: Final = 300.0

# Connections (the listener, gateway/listener/)
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
DEFAULT_HEAD_TIMEOUT: Final = 10.0
DEFAULT_BODY_TIMEOUT: Final = 30.0
DEFAULT_IDLE_TIMEOUT: Final = 60.0
#: Open files kept free of client connections: the Bot API session (up to MAX_IN_FLIGHT
#: connections, twice that with the in-process sandbox), service calls, SQLite, logs, DNS.
FD_RESERVE: Final = 192
#: The derived connection cap never exceeds this (each idle TLS connection costs ~190 KB).
MAX_CONNECTIONS_CEILING: Final = 1024
#: Below this many connections the open-file limit is too low to run on.
MIN_CONNECTIONS: Final = 16
#: The listen backlog at a roomy open-file limit (a quarter of the client budget below it).
LISTEN_BACKLOG: Final = 128
#: How long closing a TLS connection waits for the peer's close_notify.
TLS_SHUTDOWN_TIMEOUT_SECONDS: Final = 3.0
#: Repeated connection-level trouble (accept errors, refusals, malformed requests) is logged at
#: most once per this many seconds, with a count of what was held back.
LOG_THROTTLE_SECONDS: Final = 10.0

# PostgreSQL queue backend
#: Advisory lock held while the schema is migrated (replicas starting together wait for it).
PG_SCHEMA_LOCK: Final = 0x7467_5F73_6368_656D  # "tg_schem"
#: Connections each replica keeps to the database, at most.
PG_POOL_SIZE: Final = 10
#: Seconds a connection attempt or a statement may take before the database is deemed
#: unavailable (the API answers 503 storage_unavailable).
PG_CONNECT_TIMEOUT: Final = 5.0
PG_COMMAND_TIMEOUT: Final = 10.0
#: Advisory lock whose holder (a session) is the one replica that delivers.
PG_LEADER_LOCK: Final = 0x7467_5F6C_6561_6465  # "tg_leade"
#: How often a follower tries to lead, and a leader checks its session (seconds).
LEADER_POLL_SECONDS: Final = 0.5
#: How long the leader's session check may take before it deems itself cut off and stops
#: delivering. The server notices a dead leader's session after LEADER_KEEPALIVE_* (a
#: SIGKILLed one at once): longer than this, so the old leader stops before a new one starts.
LEADER_CHECK_SECONDS: Final = 1.0
LEADER_KEEPALIVE_IDLE: Final = 2
LEADER_KEEPALIVE_INTERVAL: Final = 1
LEADER_KEEPALIVE_COUNT: Final = 2
#: A pooled connection left idle inside a transaction this long is ended by the server. A claim
#: holds a share lock on the leadership row until its transaction ends; a leader cut off in
#: the middle of one (its answers lost) would otherwise block the next leader's takeover until
#: its own command timeout, or for ever if its packets never reach the server again.
PG_IDLE_IN_TRANSACTION_SECONDS: Final = 2
#: A new leader waits this long before its first send: the old leader's last sends leave
#: Telegram's one-second windows first (the new leader's flood control starts empty).
LEADER_TAKEOVER_PAUSE_SECONDS: Final = 1.0
#: NOTIFY channels: lanes with new commands (for the leader), commands that became final (for
#: `GET /commands/{id}?wait=N` on every replica).
PG_WORK_CHANNEL: Final = "gateway_work"
PG_FINAL_CHANNEL: Final = "gateway_final"
#: Files on PostgreSQL (gateway/queue/pg_media.py): bytes per chunk row, and the advisory lock
#: held by the one replica collecting unreferenced files at a time.
PG_MEDIA_CHUNK_BYTES: Final = 1024 * 1024
PG_MEDIA_LOCK: Final = 0x7467_5F6D_6564_6961  # "tg_media"
#: NOTIFY payloads must stay under 8000 bytes.
PG_NOTIFY_PAYLOAD: Final = 7000

# Sandbox
SANDBOX_HOST: Final = "127.0.0.1"
SANDBOX_PORT: Final = 8081
#: Token of the in-process sandbox bot in sandbox mode (well-formed, not a real token).
SANDBOX_TOKEN: Final = "123456789:sandbox-demo-token"
SANDBOX_DEMO_USER: Final = 1111

# --- REST API -----------------------------------------------------------------------------------
ENQUEUE_PATH: Final = "/enqueue_command"
HEALTH_PATH: Final = "/healthz"
COMMANDS_PATH: Final = "/commands"
METRICS_PATH: Final = "/metrics"
OPENAPI_PATH: Final = "/openapi.json"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: How long an idempotency key is remembered.
IDEMPOTENCY_WINDOW_SECONDS: Final = 24 * 3600
#: Deepest nesting of objects and arrays in an API request body (the body is level 1): enough
#: for any Bot API object (params → reply_markup → inline_keyboard → row → button → web_app is 6).
MAX_BODY_DEPTH: Final = 10
#: An inlet's payload (another tool's webhook): bigger and deeper than a Bot API call may be.
MAX_INLET_VALUES: Final = 200_000
MAX_INLET_DEPTH: Final = 64
#: Most values (objects, arrays, strings, numbers) in one API request body. An inline keyboard
#: holds at most 100 buttons; this leaves ample room and bounds the work per request.
MAX_BODY_VALUES: Final = 5000
#: Telegram's ids (chats, users, messages) are signed 64-bit integers at most.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: Default of `[delivery] max_text_length`: the longest text accepted, in characters (16 parts
#: of Telegram's 4096 when split).
DEFAULT_MAX_TEXT_LENGTH: Final = 65536
#: Texts longer than this are parsed and split in a worker thread, not on the event loop
#: (parsing markup costs a few microseconds per character).
OFFLOAD_TEXT_LENGTH: Final = 4096
#: Longest `GET /commands/{id}?wait=N`.
MAX_WAIT_SECONDS: Final = 60.0

#: Bot API methods /enqueue_command accepts in its general form.
ALLOWED_METHODS: Final = (
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "sendChatAction",
    "sendPhoto",
    "sendDocument",
    "sendVideo",
    "sendAudio",
    "sendVoice",
    "sendAnimation",
    "sendMediaGroup",
    "editMessageCaption",
    "editMessageMedia",
    "sendLocation",
)
PARSE_MODES: Final = ("HTML", "Markdown", "MarkdownV2")
#: Bot API methods the gateway calls for itself (never accepted from API clients).
INTERNAL_METHODS: Final = ("answerCallbackQuery",)
#: Commands that are calls to internal services, not Bot API calls.
DISPATCH_METHOD: Final = "dispatch"
CALLBACK_METHOD: Final = "callback"
SERVICE_METHODS: Final = frozenset({DISPATCH_METHOD, CALLBACK_METHOD})
#: Lanes of service calls start with this; flood control does not apply to them.
SERVICE_LANE: Final = "svc:"

# --- Media (gateway.media) ---------------------------------------------------------------------
#: Telegram's upload limits: photos 10 MB, other files 50 MB; by URL Telegram fetches photos up
#: to 5 MB and other files up to 20 MB.
TELEGRAM_MAX_PHOTO_BYTES: Final = 10 * 1000 * 1000
TELEGRAM_MAX_UPLOAD_BYTES: Final = 50 * 1000 * 1000
#: An album (sendMediaGroup) holds 2 to 10 items.
ALBUM_SIZE_RANGE: Final = (2, 10)
#: The multipart part holding the JSON body of an upload request.
PAYLOAD_PART: Final = "payload"
ATTACH_PREFIX: Final = "attach://"
DEFAULT_MEDIA_DIR: Final = "var/media"
#: Name of the media directory beside the queue file (`gateway migrate-queue`'s default).
MEDIA_DIR_NAME: Final = "media"
#: How long a gateway fetch (`"fetch": true`) may take.
DEFAULT_FETCH_TIMEOUT_SECONDS: Final = 30.0
#: Bytes of uploads in flight to Telegram at once (beyond it, uploads wait their turn).
DEFAULT_MEDIA_BYTES_IN_FLIGHT: Final = 200 * 1000 * 1000
#: How often unreferenced files are looked for, and how young a file or link is spared.
MEDIA_COLLECT_SECONDS: Final = 600.0
MEDIA_COLLECT_GRACE_SECONDS: Final = 3600.0
#: Files up to this size are read whole when sent to Telegram; larger ones are streamed.
MEDIA_IN_MEMORY_BYTES: Final = 1024 * 1024
#: Chunk size for streaming uploads to disk.
MEDIA_CHUNK_BYTES: Final = 256 * 1024

# --- Webhook ------------------------------------------------------------------------------------
#: How long a handled update's id is remembered, so that a re-send is not handled again.
#: Telegram keeps an undelivered update for 24 h; ids may restart after a week of silence.
UPDATE_DEDUP_SECONDS: Final = 48 * 3600
#: Dead letters (updates aiogram could not validate) kept for `gateway updates list --failed`.
FAILED_UPDATES_KEPT: Final = 1000

# --- Worker -------------------------------------------------------------------------------------
#: Upper bound of Bot API calls in flight at once.
MAX_IN_FLIGHT: Final = 64
#: Most lanes claimed in one go (one queue transaction and disk sync for all of them).
CLAIM_BATCH: Final = 32
#: How long shutdown waits for in-flight sends before putting them back.
SHUTDOWN_GRACE_SECONDS: Final = 5.0
#: Default request timeout for Bot API calls (`[telegram] request_timeout`), and its ceiling.
BOT_API_TIMEOUT_SECONDS: Final = 30.0
MAX_BOT_API_TIMEOUT_SECONDS: Final = 600.0

# --- Retention ----------------------------------------------------------------------------------
#: Final commands deleted per transaction: small, so a prune never holds the writer for long.
PRUNE_BATCH: Final = 500
#: Pause between two full batches (a backlog is worked off without monopolising the writer).
PRUNE_PAUSE_SECONDS: Final = 0.05
#: Longest pause when there was nothing (more) to prune; shorter for a short retention.
PRUNE_IDLE_SECONDS: Final = 60.0
#: Longest back-off after a storage error.
PRUNE_BACKOFF_MAX_SECONDS: Final = 300.0
#: Free pages handed back to the file system after each prune (4 KiB each).
VACUUM_PAGES: Final = 4096

# --- Inlets (gateway/inlets/) -------------------------------------------------------------------
#: Other tools' webhooks arrive at `{INLETS_PATH}/<inlet name>`.
INLETS_PATH: Final = "/inlets"
GITHUB_SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
GITHUB_EVENT_HEADER: Final = "X-GitHub-Event"
GITHUB_DELIVERY_HEADER: Final = "X-GitHub-Delivery"
GITLAB_TOKEN_HEADER: Final = "X-Gitlab-Token"
GITLAB_EVENT_HEADER: Final = "X-Gitlab-Event"
GITLAB_UUID_HEADER: Final = "X-Gitlab-Event-UUID"
#: How long a tap on an alert's button waits for Alertmanager's API.
ALERTMANAGER_TIMEOUT_SECONDS: Final = 5.0
