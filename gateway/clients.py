"""API clients: who may call the REST API, with which credential, for which chats and methods.

Clients live in `config/secrets/api_clients.toml` (mode 0600), managed by `gateway token
add/list/revoke`. The file holds the **SHA-256 of each token, never the token**: a leaked file
does not let anyone in. A client may also have a signing secret for request signatures (an
HMAC key must be kept as is, which is why the file stays private).

```toml
[clients.ci]
token_sha256 = "9f2c…"          # sha256 hex of the bearer token
chats = ["*"]                   # or [1111, -1001234567890, "@channel"]
methods = ["*"]                 # or ["sendMessage", "editMessageText"]
rate_per_second = 5.0           # optional token bucket
signing_secret = "…"            # optional: requests must carry X-Gateway-Signature
created_at = "2026-11-24T03:50:00Z"
```
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import constants as c
from gateway.errors import ConfigError
from gateway.secretfiles import Secret

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "gwt_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ANY = "*"
#: Compared against when no client has the presented token's hash (never a SHA-256 hex).
_NO_CLIENT = "-" * 64


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A bearer token: 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiClient:
    """One client's credential and scope."""

    name: str
    token_sha256: str
    #: None means every chat.
    chats: frozenset[int | str] | None = None
    #: None means every method the gateway allows.
    methods: frozenset[str] | None = None
    rate_per_second: float | None = None
    signing_secret: Secret | None = None
    created_at: str = ""

    def may_send_to(self, chat: int | str | None) -> bool:
        return self.chats is None or chat in self.chats

    def may_call(self, method: str) -> bool:
        return self.methods is None or method in self.methods


class ClientRegistry:
    """The clients file, loaded at start and again whenever it changes (or on SIGHUP)."""

    def __init__(self, path: Path, extra: Sequence[ApiClient] = ()) -> None:
        self.path = path
        #: Clients that live in memory only (sandbox mode's demo client).
        self._extra = tuple(extra)
        self._clients: tuple[ApiClient, ...] = ()
        self._by_hash: dict[str, ApiClient] = {}
        self._use(self._extra)
        self._stamp: tuple[float, int] | None = None

    @property
    def clients(self) -> tuple[ApiClient, ...]:
        return self._clients

    def load(self) -> None:
        """Read the file; a missing file means no clients. Raises ConfigError on a bad file."""
        self._use((*read_clients(self.path), *self._extra))
        self._stamp = _stamp(self.path)

    def reload_if_changed(self, force: bool = False) -> bool:
        """Reload when the file changed; keep the old clients (and log) if it is now invalid."""
        stamp = _stamp(self.path)
        if stamp == self._stamp and not force:
            return False
        try:
            clients = (*read_clients(self.path), *self._extra)
        except ConfigError as exc:
            logger.error("API clients not reloaded, keeping the previous ones: %s", exc)
            self._stamp = stamp
            return False
        self._use(clients)
        self._stamp = stamp
        logger.info("API clients reloaded: %d client(s)", len(clients))
        return True

    def _use(self, clients: tuple[ApiClient, ...]) -> None:
        self._clients = clients
        # By hash: a lookup per request however many clients there are (the last of two
        # clients sharing a token wins, as the scan over all of them used to decide).
        self._by_hash = {client.token_sha256: client for client in clients}

    def authenticate(self, token: str) -> ApiClient | None:
        """The client whose token this is: found by the token's SHA-256 (a dict lookup on a
        hash reveals nothing about the token), then compared in constant time."""
        presented = hash_token(token)
        client = self._by_hash.get(presented)
        expected = client.token_sha256 if client is not None else _NO_CLIENT
        if hmac.compare_digest(presented.encode(), expected.encode()) and client is not None:
            return client
        return None

    def get(self, name: str) -> ApiClient | None:
        return next((client for client in self._clients if client.name == name), None)


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime, st.st_size


def read_clients(path: Path) -> list[ApiClient]:
    """Parse the clients file; a missing file means no clients."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the API clients file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"clients"})
    if extra:
        raise ConfigError(f"{path}: unknown key '{extra[0]}' (expected [clients.NAME] tables)")
    table = data.get("clients", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'clients' must be a table of [clients.NAME] tables")
    return [_client(path, name, entry) for name, entry in table.items()]


_FIELDS = frozenset(
    {"token_sha256", "chats", "methods", "rate_per_second", "signing_secret", "created_at"}
)


def _client(path: Path, name: str, entry: Any) -> ApiClient:
    where = f"{path}: [clients.{name}]"
    if not NAME_RE.match(name):
        raise ConfigError(f"{where}: a name is 1-64 of A-Z a-z 0-9 _ . - characters")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
    digest = entry.get("token_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{where}: token_sha256 must be 64 lower-case hex digits")
    chats = _scope(entry.get("chats", [ANY]), where, "chats", (int, str))
    methods = _scope(entry.get("methods", [ANY]), where, "methods", (str,))
    if methods is not None:
        bad = sorted(m for m in methods if m not in c.ALLOWED_METHODS)
        if bad:
            raise ConfigError(f"{where}: method '{bad[0]}' is not one the gateway allows")
    rate = entry.get("rate_per_second")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
    ):
        raise ConfigError(f"{where}: rate_per_second must be a positive number")
    secret = entry.get("signing_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise ConfigError(f"{where}: signing_secret must be a string of 16+ characters")
    return ApiClient(
        name=name,
        token_sha256=digest,
        chats=chats,
        methods=methods,
        rate_per_second=float(rate) if rate is not None else None,
        signing_secret=Secret(secret) if secret else None,
        created_at=str(entry.get("created_at", "")),
    )


def _scope(value: Any, where: str, key: str, types: tuple[type, ...]) -> frozenset[Any] | None:
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{where}: {key} must be a non-empty list ("*" for all)')
    if ANY in value:
        return None
    for item in value:
        if isinstance(item, bool) or not isinstance(item, types):
            raise ConfigError(f"{where}: {key} has an invalid entry {item!r}")
    return frozenset(value)


# --- writing (the `gateway token` command) ---------------------------------------------------


def parse_rate(text: str) -> float:
    """`10/s`, `600/m`, `36000/h` or a bare number (per second)."""
    number, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit.strip())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or not value > 0:
        raise ConfigError(f"rate must look like 10/s, 600/m or 5, not {text!r}")
    return value / per


def add_client(
    path: Path,
    name: str,
    *,
    chats: Sequence[int | str] = (),
    methods: Sequence[str] = (),
    rate_per_second: float | None = None,
    signing: bool = False,
) -> tuple[str, str | None]:
    """Create a client; returns its token and signing secret (shown once, never stored)."""
    clients = read_clients(path)
    if any(client.name == name for client in clients):
        raise ConfigError(f"a client named {name!r} exists already (revoke it first)")
    token = new_token()
    secret = secrets.token_urlsafe(32) if signing else None
    entry = {
        "token_sha256": hash_token(token),
        "chats": list(chats) or [ANY],
        "methods": list(methods) or [ANY],
        "rate_per_second": rate_per_second,
        "signing_secret": secret,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _client(path, name, {k: v for k, v in entry.items() if v is not None})  # validate
    write_clients(path, [*_entries(clients), (name, entry)])
    return token, secret


def revoke_client(path: Path, name: str) -> None:
    """Remove a client: its token stops working as soon as the gateway notices."""
    clients = read_clients(path)
    if not any(client.name == name for client in clients):
        raise ConfigError(f"no client named {name!r} in {path}")
    write_clients(path, [e for e in _entries(clients) if e[0] != name])


def _entries(clients: Iterable[ApiClient]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            client.name,
            {
                "token_sha256": client.token_sha256,
                "chats": sorted(client.chats, key=str) if client.chats is not None else [ANY],
                "methods": sorted(client.methods) if client.methods is not None else [ANY],
                "rate_per_second": client.rate_per_second,
                "signing_secret": client.signing_secret.reveal() if client.signing_secret else None,
                "created_at": client.created_at,
            },
        )
        for client in clients
    ]


def write_clients(path: Path, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Write the file atomically, mode 0600 from the start."""
    lines = [
        "# API clients of the Telegram Gateway. Managed by `gateway token add/list/revoke`.",
        "# Tokens are stored as SHA-256 hashes, but signing secrets are not: keep it 0600.",
        "",
    ]
    for name, entry in entries:
        lines.append(f"[clients.{_toml_key(name)}]")
        for key, value in entry.items():
            if value is not None and value != "":
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".api_clients.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
