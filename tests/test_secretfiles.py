"""Every secrets file is under `[server] key_permissions`: readable by others → refuse to start
with one line naming the file and `chmod 600` (or warn); the generated ones are 0600."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from gateway.certs import write_certificate
from gateway.clients import add_client
from gateway.config import load_config
from gateway.errors import CertificateError, ConfigError
from gateway.server import check_certificate

TOKEN = "4242:test-token-abcdef"
ENV = {"GATEWAY_SERVER_PUBLIC_URL": "https://127.0.0.1:8443"}
ROUTE = '[[routes]]\ncommand = "deploy"\nurl = "http://127.0.0.1:9/d"\n'
SECRETS = [
    "config/secrets/bot_api.txt",
    "config/secrets/api_clients.toml",
    "config/secrets/webhook_secret.txt",
    "config/secrets/callback_secret.txt",
    "config/secrets/route_deploy.key",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A complete, private layout: every secrets file exists, mode 0600."""
    secrets = tmp_path / "config/secrets"
    secrets.mkdir(parents=True)
    (secrets / "bot_api.txt").write_text(TOKEN + "\n")
    (secrets / "bot_api.txt").chmod(0o600)
    (secrets / "allowed_user.txt").write_text("1111\n")
    add_client(secrets / "api_clients.toml", "ci", signing=True)
    (tmp_path / "config/gateway.toml").write_text(ROUTE)
    load_config(None, ENV, base_dir=tmp_path)  # generates the other secrets
    return tmp_path


def test_generated_secrets_files_are_private(root: Path) -> None:
    write_certificate(root / "certs", "127.0.0.1", 1)
    for relative in [*SECRETS, "certs/key.pem"]:
        assert stat.S_IMODE((root / relative).stat().st_mode) == 0o600, relative


@pytest.mark.parametrize("relative", SECRETS)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secrets_file_others_can_read_is_refused(root: Path, relative: str, mode: int) -> None:
    (root / relative).chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_config(None, ENV, base_dir=root)
    message = str(info.value)
    assert relative in message and f"chmod 600 {root / relative}" in message
    assert "\n" not in message and TOKEN not in message


@pytest.mark.parametrize("relative", SECRETS)
def test_warn_starts_with_one_warning_naming_the_file(
    root: Path, relative: str, caplog: pytest.LogCaptureFixture
) -> None:
    (root / relative).chmod(0o644)
    env = {**ENV, "GATEWAY_SERVER_KEY_PERMISSIONS": "warn"}
    with caplog.at_level(logging.WARNING):
        config = load_config(None, env, base_dir=root)
    assert config.token is not None
    [record] = [r for r in caplog.records if "chmod 600" in r.getMessage()]
    assert relative in record.getMessage()


def test_the_token_from_the_environment_needs_no_file(root: Path) -> None:
    (root / "config/secrets/bot_api.txt").chmod(0o644)
    config = load_config(None, {**ENV, "GATEWAY_BOT_TOKEN": "77:from-env"}, base_dir=root)
    assert config.token is not None and config.token.reveal() == "77:from-env"


def test_a_private_key_others_can_read_is_refused(root: Path) -> None:
    write_certificate(root / "certs", "127.0.0.1", 1)
    (root / "certs/key.pem").chmod(0o644)
    with pytest.raises(CertificateError, match="chmod 600"):
        check_certificate(load_config(None, ENV, base_dir=root))
