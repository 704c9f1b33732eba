"""The `gateway` commands that do not talk to Telegram start without loading its stack.

Each command runs in its own interpreter, as a user runs it; a small wrapper runs the real
entry point and then reports which of the heavy packages ended up in `sys.modules`. This is
the behaviour behind the start-up time (aiogram's models alone took seconds to import), and
it holds on any machine, loaded or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.queue.sqlite import SqliteQueue

HEAVY = ("aiogram", "aiohttp", "asyncpg", "jinja2", "prometheus_client", "pydantic")

WRAPPER = """
import json, sys
from gateway.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
heavy = sorted({name.partition(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({"status": status, "heavy": heavy, "cryptography": "cryptography" in sys.modules}),
      file=sys.stderr)
"""


def run_cli(args: list[str], cwd: Path) -> tuple[int, list[str], bool, str]:
    """Run `gateway ARGS` through the wrapper: exit status, heavy packages loaded, whether
    cryptography was loaded, and stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{WRAPPER}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return int(report["status"]), report["heavy"], bool(report["cryptography"]), done.stdout


@pytest.fixture
async def queue_file(tmp_path: Path) -> Path:
    path = tmp_path / "var" / "gateway.db"
    path.parent.mkdir()
    queue = SqliteQueue(path)
    await queue.open()
    await queue.close()
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["token", "--help"],
        ["token", "list"],
        ["token", "add", "billing", "--chat", "42", "--rate", "5/s"],
        ["token", "callback-key", "ci"],
        ["token", "revoke", "ci"],
        ["backup", "copy.db"],
        ["gen-cert", "--host", "127.0.0.1", "--out", "certs"],
    ],
    ids=lambda args: " ".join(args),
)
def test_offline_commands_do_not_load_the_telegram_stack(
    args: list[str], tmp_path: Path, queue_file: Path
) -> None:
    # A config file that names its paths, as a deployment's does: reading one setting from it
    # must not drag in what validating the whole file needs (jinja2 for inlet templates, ...).
    (tmp_path / "gateway.toml").write_text(
        '[server]\nclients_file = "config/clients.toml"\n'
        'callback_secret_file = "config/callback.key"\n'
        f'[queue]\npath = "{queue_file}"\n'
    )
    (tmp_path / "config").mkdir()
    status, _, _, _ = run_cli(["token", "--config", "gateway.toml", "add", "ci"], tmp_path)
    assert status == 0
    if args[0] == "token" and args[1] != "--help":
        args = ["token", "--config", "gateway.toml", *args[1:]]
    elif args[0] == "backup":
        args = [*args, "--config", "gateway.toml"]
    status, heavy, cryptography, out = run_cli(args, tmp_path)
    assert status == 0, out
    assert heavy == []
    # Only gen-cert makes a certificate; nothing else needs the cryptography package.
    assert cryptography == (args[0] == "gen-cert")
    if args[:1] == ["backup"]:
        assert (tmp_path / "copy.db").exists()
    if "list" in args:
        assert out.startswith("ci: ")


def test_run_still_loads_what_it_needs(tmp_path: Path) -> None:
    """The lazy imports are per command: `gateway check` (which talks to Telegram) gets aiogram."""
    (tmp_path / "gateway.toml").write_text('[queue]\nbackend = "memory"\n')
    _, heavy, _, _ = run_cli(["check", "--config", "gateway.toml"], tmp_path)
    assert "aiogram" in heavy
