"""Deployment files: the systemd unit verifies, the container's command runs, its paths exist."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_loopback_address, terminate
from tests.test_cli import free_port

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy/telegram-gateway.service"
INSTALL_DIR = "/opt/telegram-gateway"

pytestmark = pytest.mark.timeout(120)


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def instruction(name: str) -> list[str]:
    return [line[len(name) :].strip() for line in dockerfile() if line.startswith(name + " ")]


def test_unit_is_hardened_and_names_its_writable_paths() -> None:
    unit = UNIT.read_text()
    for setting in (
        "User=telegram-gateway",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
    ):
        assert setting in unit.splitlines(), setting
    writable = next(line for line in unit.splitlines() if line.startswith("ReadWritePaths="))
    for path in ("var", "config/secrets", "certs"):
        assert f"{INSTALL_DIR}/{path}" in writable.split("=", 1)[1].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # The unit as installed, with /opt/telegram-gateway moved here so its paths exist.
    install = tmp_path / "telegram-gateway"
    for path in ("var", "config/secrets", "certs", ".venv/bin"):
        (install / path).mkdir(parents=True)
    (install / ".venv/bin/gateway").symlink_to(Path(sys.executable).parent / "gateway")
    unit = tmp_path / "telegram-gateway.service"
    unit.write_text(UNIT.read_text().replace(INSTALL_DIR, str(install)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [line for line in done.stderr.splitlines() if "telegram-gateway.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = instruction("COPY")
    assert copies
    for args in copies:
        *sources, _ = shlex.split(args)
        for source in sources:
            assert not source.startswith("--"), "no multi-stage COPY expected"
            assert (ROOT / source).exists(), source
            ignored = (ROOT / ".dockerignore").read_text().split()
            assert source not in ignored, f"{source} is copied but .dockerignore drops it"


def test_compose_mounts_the_dockerfiles_volumes() -> None:
    volumes = json.loads(instruction("VOLUME")[0])
    compose = (ROOT / "compose.yaml").read_text()
    for volume in volumes:
        assert f":{volume}\n" in compose, volume


def test_the_containers_command_runs_and_its_healthcheck_passes(tmp_path: Path) -> None:
    """CMD and HEALTHCHECK exactly as the Dockerfile says, in a directory laid out like /app."""
    command = json.loads(instruction("CMD")[0])
    health = instruction("HEALTHCHECK")[0]
    health_command = json.loads(health[health.index("CMD") + 3 :].strip())
    for path in ("var", "config/secrets", "certs"):
        (tmp_path / path).mkdir(parents=True, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for line in instruction("ENV"):
        name, _, value = line.partition("=")
        if name.startswith("GATEWAY_"):
            env[name] = value
    assert env["GATEWAY_SERVER_HOST"] == "0.0.0.0"
    # Tests stay on loopback: the one change to the container's environment.
    env["GATEWAY_SERVER_HOST"] = free_loopback_address()
    env["GATEWAY_SANDBOX_PORT"] = str(free_port())
    with (tmp_path / "gateway.log").open("w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        healthy = False
        for _ in range(300):
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            done = subprocess.run(
                health_command, cwd=tmp_path, env=env, capture_output=True, timeout=30
            )
            if done.returncode == 0:
                healthy = True
                break
            time.sleep(0.2)
        assert healthy, (tmp_path / "gateway.log").read_text()
    finally:
        terminate(proc)
    assert proc.returncode == 0
    assert (tmp_path / "certs/key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "var/gateway.db").exists()
    lines = (tmp_path / "gateway.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry["message"].startswith("worker stopped") for entry in logged)


def test_license_is_the_mit_licence_setup_cfg_declares() -> None:
    assert "license = MIT" in (ROOT / "setup.cfg").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
