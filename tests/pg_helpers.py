"""A private PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

The server runs as an unprivileged user (PostgreSQL refuses to run as root, and CI runs as
root: the data directory is then given to `postgres` or `nobody`), listens on 127.0.0.1 only,
on a free port, with its unix socket in the temporary directory too, and trusts connections
from loopback alone. Each test gets a database of its own (`PgServer.new_database`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Where Debian puts the server binaries (`initdb` is not on PATH there).
_DEBIAN_BIN = Path("/usr/lib/postgresql")
_USERS = ("postgres", "nobody")
SUPERUSER = "gateway_test"


def find_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    if _DEBIAN_BIN.is_dir():
        for version in sorted(_DEBIAN_BIN.iterdir(), reverse=True):
            if (version / "bin" / "initdb").is_file():
                return version / "bin"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgServer:
    """A running private server; `dsn(database)` connects to it as its superuser."""

    bin_dir: Path
    root: Path
    port: int
    user: str | None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres", host: str = "127.0.0.1", port: int = 0) -> str:
        return f"postgresql://{SUPERUSER}@{host}:{port or self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` through psql as the superuser (over TCP, like the gateway)."""
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        _run_as(self.user, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args], timeout)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c max_connections=200 "
            "-c shared_buffers=32MB -c log_min_messages=warning"
        )
        self.pg_ctl("start", "-w", "-t", "60", "-l", str(self.root / "server.log"), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends exit on their own)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)


def _run_as(user: str | None, argv: list[str], timeout: float) -> None:
    preexec = None
    if user is not None:
        entry = pwd.getpwnam(user)

        def preexec() -> None:  # in the child: drop root for the PostgreSQL binaries
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec,
        cwd="/",
    )
    if done.returncode:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip() or done.stdout}")


def _unprivileged_user() -> str | None:
    """None when we are not root; else a system user PostgreSQL may run as."""
    if os.geteuid() != 0:
        return None
    for name in _USERS:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


ROOT_PREFIX = "gateway-pg-"
#: The process that started the server: a run killed before it could stop its server (a
#: SIGKILLed pytest, a CI timeout) leaves it behind, and the next run stops it.
OWNER_FILE = "owner.pid"


def _reap_orphans(bin_dir: Path, user: str | None) -> None:
    """Stop and remove servers whose owning process is gone."""
    for root in Path(tempfile.gettempdir()).glob(ROOT_PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
            os.kill(owner, 0)
            continue  # still running: not ours to touch
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # no owner recorded (or not readable): leave it alone
        data = root / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                _run_as(
                    user, [str(bin_dir / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate"], 30
                )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[PgServer]:
    """Start a private server (initdb + pg_ctl) in a temporary directory; stop and remove it."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL (initdb, pg_ctl) is not installed")
    user = _unprivileged_user()
    _reap_orphans(bin_dir, user)
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
    (root / OWNER_FILE).write_text(f"{os.getpid()}\n")
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chmod(root, 0o700)
        server = PgServer(bin_dir, root, free_port(), user)
        _run_as(
            user,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
                "-A",
                "reject",
            ],
            120,
        )
        # Trust for loopback TCP only: no socket, no other address may connect at all.
        hba = server.data / "pg_hba.conf"
        hba.write_text("host all all 127.0.0.1/32 trust\n")
        if user is not None:
            os.chown(hba, entry.pw_uid, entry.pw_gid)
        server.start()
        try:
            yield server
        finally:
            if (server.data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
