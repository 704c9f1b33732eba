"""Configuration: defaults, overrides, and one clear line for every user mistake."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.certs import generate_certificate, write_certificate
from gateway.config import load_config
from gateway.errors import CertificateError, ConfigError
from gateway.server import check_certificate

TOKEN = "4242:test-token-abcdef"
REPO = Path(__file__).resolve().parents[1]


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if relative.startswith("config/secrets/"):
        path.chmod(0o600)  # the gateway refuses secrets files others can read
    return path


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A directory laid out like the original version's: token, users, certificate pair."""
    write(tmp_path, "config/secrets/bot_api.txt", TOKEN)
    write(tmp_path, "config/secrets/allowed_user.txt", "1111\n# ops\n\n2222  # on call\n")
    return tmp_path


def test_defaults_without_any_file_mean_sandbox_mode(tmp_path: Path) -> None:
    config = load_config(None, {}, base_dir=tmp_path)
    assert config.sandbox_mode
    assert config.server.port == 8443
    assert config.telegram.api_base == "https://api.telegram.org"
    assert config.public_url == "https://127.0.0.1:8443"
    assert config.webhook_url == "https://127.0.0.1:8443/telegram/webhook"
    assert config.allowed_users == frozenset({1111})
    assert config.queue.backend == "sqlite"
    assert config.queue_path == tmp_path / "var/gateway.db"
    # The demo prints its API token: loopback only unless an address is named.
    assert config.server.host == "127.0.0.1"
    named = load_config(None, {"GATEWAY_SERVER_HOST": "0.0.0.0"}, base_dir=tmp_path)
    assert named.server.host == "0.0.0.0"


def test_original_secrets_files_are_read(live: Path) -> None:
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org"}
    config = load_config(None, env, base_dir=live)
    assert not config.sandbox_mode
    assert config.token is not None and config.token.reveal() == TOKEN
    assert config.allowed_users == frozenset({1111, 2222})
    assert config.public_url == "https://gw.example.org"


def test_secret_token_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = load_config(None, {}, base_dir=tmp_path)
    path = tmp_path / "config/secrets/webhook_secret.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_config(None, {}, base_dir=tmp_path)
    assert first.secret_token == second.secret_token
    assert TOKEN not in repr(first) and first.secret_token.reveal() not in repr(first)


def test_toml_file_and_environment_override(live: Path) -> None:
    write(
        live,
        "config/gateway.toml",
        '[server]\nport = 88\npublic_url = "https://gw.example.org:88"\n'
        "[telegram]\nmax_connections = 10\n",
    )
    env = {"GATEWAY_TELEGRAM_MAX_CONNECTIONS": "5", "GATEWAY_TELEGRAM_API_BASE": "http://x:1"}
    config = load_config(None, env, base_dir=live)
    assert config.server.port == 88
    assert config.telegram.max_connections == 5
    assert config.telegram.api_base == "http://x:1"


def test_bot_token_from_environment_wins(tmp_path: Path) -> None:
    env = {"GATEWAY_BOT_TOKEN": "77:from-env", "GATEWAY_SERVER_PUBLIC_URL": "https://h"}
    write(tmp_path, "config/secrets/allowed_user.txt", "1\n")
    config = load_config(None, env, base_dir=tmp_path)
    assert config.token is not None and config.token.reveal() == "77:from-env"
    assert config.server.host == "0.0.0.0"  # a real bot listens for Telegram on every address


@pytest.mark.parametrize(
    ("files", "env", "message"),
    [
        ({}, {"GATEWAY_TELEGRAM_TOKEN_FILE": "nope.txt"}, "nope.txt: bot token file not found"),
        (
            {"config/secrets/bot_api.txt": "not a token"},
            {},
            "config/secrets/bot_api.txt: not a bot token",
        ),
        (
            {"config/secrets/allowed_user.txt": "1111\nann\n"},
            {},
            "config/secrets/allowed_user.txt:2: 'ann' is not a numeric Telegram user id",
        ),
        ({"config/gateway.toml": "[server]\nprot = 1\n"}, {}, "unknown key [server] prot"),
        ({"config/gateway.toml": "[srv]\n"}, {}, "unknown section or key 'srv'"),
        ({"config/gateway.toml": "[server\n"}, {}, "not valid TOML"),
        ({"config/gateway.toml": '[server]\nport = "x"\n'}, {}, "[server] port must be a whole"),
        ({}, {"GATEWAY_SERVER_PORT": "eighty"}, "GATEWAY_SERVER_PORT must be a whole number"),
        ({}, {"GATEWAY_SERVER_PORTT": "1"}, "GATEWAY_SERVER_PORTT is not a known setting"),
        (
            {},
            {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org:8080"},
            "public_url port 8080 is not allowed by Telegram",
        ),
        ({}, {"GATEWAY_SERVER_PUBLIC_URL": "http://gw.example.org"}, "must be an https:// URL"),
        ({}, {"GATEWAY_TELEGRAM_MAX_CONNECTIONS": "500"}, "max_connections must be between"),
        ({}, {"GATEWAY_QUEUE_BACKEND": "kafka"}, "GATEWAY_QUEUE_BACKEND must be one of"),
        ({}, {"GATEWAY_QUEUE_RETENTION": "7 days"}, "GATEWAY_QUEUE_RETENTION must be a duration"),
        ({"config/gateway.toml": "[queue]\nretention = true\n"}, {}, "[queue] retention must be"),
        ({"config/gateway.toml": '[queue]\nretention = "1w"\n'}, {}, "[queue] retention must be"),
        ({}, {"GATEWAY_QUEUE_RETENTION": "0"}, "[queue] retention must be at least 1 second"),
        ({}, {"GATEWAY_SERVER_HEAD_TIMEOUT": "0"}, "[server] head_timeout must be above 0"),
        (
            {"config/gateway.toml": "[server]\nbody_timeout = -1\n"},
            {},
            "[server] body_timeout must be above 0",
        ),
        ({}, {"GATEWAY_SERVER_IDLE_TIMEOUT": "nan"}, "[server] idle_timeout must be above 0"),
        ({}, {"GATEWAY_SERVER_MAX_CONNECTIONS": "-1"}, "[server] max_connections must be 0"),
        ({"config/secrets/webhook_secret.txt": "a b"}, {}, "may only contain"),
    ],
)
def test_user_errors_name_the_file_or_key(
    live: Path, files: dict[str, str], env: dict[str, str], message: str
) -> None:
    for relative, text in files.items():
        write(live, relative, text)
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org", **env}
    with pytest.raises(ConfigError) as info:
        load_config(None, env, base_dir=live)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_retention_takes_a_duration(tmp_path: Path, value: object, seconds: float) -> None:
    text = f'"{value}"' if isinstance(value, str) else str(value)
    write(tmp_path, "config/gateway.toml", f"[queue]\nretention = {text}\n")
    assert load_config(None, {}, base_dir=tmp_path).queue.retention == seconds
    if isinstance(value, str):
        env = {"GATEWAY_QUEUE_RETENTION": value}
        assert load_config(None, env, base_dir=tmp_path).queue.retention == seconds


def test_retention_defaults_to_a_week(tmp_path: Path) -> None:
    assert load_config(None, {}, base_dir=tmp_path).queue.retention == 7 * 86400


def test_public_url_is_required_with_a_token(live: Path) -> None:
    with pytest.raises(ConfigError, match="public_url is required"):
        load_config(None, {}, base_dir=live)


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.toml: config file not found"):
        load_config(tmp_path / "missing.toml", {}, base_dir=tmp_path)


def test_legacy_certificate_location_is_preferred(live: Path) -> None:
    write_certificate(live / "config/secrets", "gw.example.org", 30)
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org"}
    config = load_config(None, env, base_dir=live)
    assert config.certificate_path == live / "config/secrets/certificate.pem"
    assert check_certificate(config).self_signed


def _config_with_cert(live: Path, host: str = "gw.example.org") -> Path:
    write_certificate(live / "certs", host, 30)
    return live


def test_certificate_problems_stop_start_up(live: Path) -> None:
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org"}
    config = load_config(None, env, base_dir=live)
    with pytest.raises(CertificateError, match=r"certificate.pem"):
        check_certificate(config)  # missing

    _config_with_cert(live, "other.example.org")
    with pytest.raises(CertificateError, match=r"not for public_url host gw.example.org"):
        check_certificate(config)

    (live / "certs/key.pem").write_bytes(generate_certificate("gw.example.org")[1])
    with pytest.raises(CertificateError, match=r"key.pem"):
        check_certificate(config)  # mismatched key


def test_readable_private_key_is_refused(live: Path) -> None:
    _config_with_cert(live)
    os.chmod(live / "certs/key.pem", 0o644)
    env = {"GATEWAY_SERVER_PUBLIC_URL": "https://gw.example.org"}
    with pytest.raises(CertificateError, match=r"key.pem"):
        check_certificate(load_config(None, env, base_dir=live))


def test_expired_certificate_is_refused(live: Path) -> None:
    _config_with_cert(live)
    from gateway.certs import load_certificate_pair

    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(CertificateError, match="expired"):
        load_certificate_pair(live / "certs/certificate.pem", live / "certs/key.pem", now=later)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GATEWAY_TELEGRAM_TOKEN_FILE": "nope.txt"}, "nope.txt: bot token file not found"),
        ({"GATEWAY_SERVER_PUBLIC_URL": "https://h:1234"}, "port 1234 is not allowed"),
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "run"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_example_config_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    example = REPO / "config/gateway.example.toml"
    from_example = load_config(example, {}, base_dir=tmp_path)
    defaults = load_config(None, {}, base_dir=tmp_path)
    for section in ("server", "telegram", "queue", "delivery", "flood", "sandbox"):
        assert getattr(from_example, section) == getattr(defaults, section), section


ROUTE = '[[routes]]\ncommand = "deploy"\nurl = "https://ci.example/hook"\n'


def test_routes_are_read_and_their_keys_generated(tmp_path: Path) -> None:
    write(tmp_path, "config/gateway.toml", ROUTE + 'description = "Deploy"\nallowed_users = [1]\n')
    config = load_config(None, {}, base_dir=tmp_path)
    [route] = config.routes
    assert (route.command, route.url, route.description) == (
        "deploy",
        "https://ci.example/hook",
        "Deploy",
    )
    assert route.allowed_users == frozenset({1}) and route.max_attempts == 3
    key = tmp_path / "config/secrets/route_deploy.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert route.secret.reveal() == key.read_text().strip()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[routes]]\ncommand = "Deploy!"\nurl = "https://x"\n', "command must be 1-32 of a-z"),
        ('[[routes]]\ncommand = "help"\nurl = "https://x"\n', "/help is the gateway's own command"),
        ('[[routes]]\ncommand = "deploy"\nurl = "ftp://x"\n', "url must be an http(s) URL"),
        (ROUTE + "colour = 1\n", "unknown key 'colour'"),
        (ROUTE + "timeout_s = 0\n", "timeout_s must be a number of seconds"),
        (ROUTE + 'allowed_users = ["ann"]\n', "allowed_users must be a list of numeric"),
        (ROUTE + ROUTE, "two [[routes]] for /deploy"),
        ('routes = "deploy"\n', "'routes' must be an array of tables"),
    ],
)
def test_route_mistakes_name_the_route(tmp_path: Path, toml: str, message: str) -> None:
    write(tmp_path, "config/gateway.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, base_dir=tmp_path)
    assert message in str(info.value)
