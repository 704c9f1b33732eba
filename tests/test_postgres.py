"""What only the PostgreSQL queue promises: shared schema, shared state, outages survived.

The Queue contract itself runs against postgres in tests/test_queue.py. These tests use the
session's private server (tests/pg_helpers.py); the ones that stop it start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway import cli, keys
from gateway import constants as c
from gateway.certs import client_ssl_context, write_certificate
from gateway.cluster import Leadership
from gateway.commands import Command, Status
from gateway.errors import ConfigError, StartupError, StorageError
from gateway.guards import RateLimiter
from gateway.ops.check import postgres_check
from gateway.ops.migrate import Moved, migrate_queue
from gateway.queue import SqliteQueue
from gateway.queue.base import FailedUpdate, UpdateRecord
from gateway.queue.pg_schema import SCHEMA_VERSION, VERSION_TABLE
from gateway.queue.postgres import PostgresQueue
from gateway.secretfiles import Secret
from gateway.server import serve
from tests.conftest import USER, GatewayFactory, Sandbox, Workspace, free_loopback_address
from tests.pg_helpers import PgServer
from tests.tcp_proxy import TcpProxy

T0 = 1_700_000_000.0


@pytest.fixture
async def replicas(pg_dsn: str) -> AsyncIterator[tuple[PostgresQueue, PostgresQueue]]:
    """Two queues on one database, as two replicas would hold them."""
    a, b = PostgresQueue(pg_dsn), PostgresQueue(pg_dsn)
    await asyncio.gather(a.open(), b.open())
    try:
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_replicas_starting_together_make_one_schema(pg_server: PgServer, pg_dsn: str) -> None:
    queues = [PostgresQueue(pg_dsn) for _ in range(4)]
    await asyncio.gather(*(queue.open() for queue in queues))
    try:
        versions = pg_server.psql(f"SELECT version FROM {VERSION_TABLE}", pg_dsn.rsplit("/", 1)[1])
        assert versions.split() == [str(SCHEMA_VERSION)]
        command = Command("sendMessage", {"chat_id": 1, "text": "hi"})
        await queues[0].put([command])
        assert await queues[3].get(command.id) == command
    finally:
        await asyncio.gather(*(queue.close() for queue in queues))


async def test_a_newer_schema_is_refused(pg_server: PgServer, pg_dsn: str) -> None:
    queue = PostgresQueue(pg_dsn)
    await queue.open()
    await queue.close()
    pg_server.psql(f"UPDATE {VERSION_TABLE} SET version = 99", pg_dsn.rsplit("/", 1)[1])

    with pytest.raises(
        StartupError, match=f"schema version 99, newer than this gateway's {SCHEMA_VERSION}"
    ):
        await PostgresQueue(pg_dsn).open()


async def test_an_unreachable_database_is_a_startup_error_without_the_password(
    pg_server: PgServer,
) -> None:
    with socket_closed_port() as port:
        dsn = f"postgresql://user:hunter2@127.0.0.1:{port}/db"
        with pytest.raises(StartupError, match="cannot open the queue database") as caught:
            await PostgresQueue(dsn).open()
    assert "hunter2" not in str(caught.value)


async def test_replicas_share_commands_and_one_lane_in_flight(
    replicas: tuple[PostgresQueue, PostgresQueue],
) -> None:
    a, b = replicas
    first = Command("sendMessage", {"chat_id": 5, "text": "first"})
    second = Command("sendMessage", {"chat_id": 5, "text": "second"})
    await a.put([first])
    await b.put([second])

    claims = await asyncio.gather(a.claim("5", T0), b.claim("5", T0))
    claimed = [command for command in claims if command is not None]
    assert [command.id for command in claimed] == [first.id]
    await b.complete(first.id, {"message_id": 1}, T0)
    after = await a.claim("5", T0)
    assert after is not None and after.id == second.id


async def test_a_signature_used_on_one_replica_is_refused_on_the_other(
    replicas: tuple[PostgresQueue, PostgresQueue],
) -> None:
    a, b = replicas
    assert await a.remember_signature("client", "sig", T0 + 300, T0)
    assert not await b.remember_signature("client", "sig", T0 + 300, T0 + 1)


async def test_migrated_chats_are_kept_for_every_replica(
    replicas: tuple[PostgresQueue, PostgresQueue],
) -> None:
    a, b = replicas
    assert await b.migrated_chats() == {}
    await a.save_migrated_chat("-100", -1001234567890)
    await a.save_migrated_chat("-100", -1009999999999)
    assert await b.migrated_chats() == {"-100": -1009999999999}


async def test_the_rate_limit_is_shared_by_replicas(
    replicas: tuple[PostgresQueue, PostgresQueue],
) -> None:
    """Requests spread over two replicas get no more than one replica alone would grant."""
    a, b = replicas
    rate, seconds, step = 5.0, 4.0, 0.02
    local = RateLimiter(clock=lambda: now)
    granted = expected = 0
    for tick in range(int(seconds / step)):
        now = T0 + tick * step
        for replica in (a, b, a):
            granted += await replica.take_token("client", rate, now) == 0
            expected += local.acquire("client", rate) == 0
    assert granted <= expected * 1.1
    assert granted >= expected * 0.9
    # Refused: how long until the next one, as the local limiter says.
    wait = await b.take_token("client", rate, now)
    assert 0 < wait <= 1 / rate + 1e-6


async def test_the_limiter_uses_the_shared_store_when_given_one(
    replicas: tuple[PostgresQueue, PostgresQueue],
) -> None:
    a, b = replicas
    one, two = RateLimiter(shared=a), RateLimiter(shared=b)
    assert await one.take("c", 1.0) == 0
    assert await two.take("c", 1.0) > 0


async def test_a_database_restart_is_503_then_recovered(pg_server: PgServer, pg_dsn: str) -> None:
    queue = PostgresQueue(pg_dsn)
    await queue.open()
    try:
        before = Command("sendMessage", {"chat_id": 1, "text": "before"})
        await queue.put([before])
        pg_server.stop()
        try:
            with pytest.raises(StorageError, match="unavailable"):
                await queue.put([Command("sendMessage", {"chat_id": 1, "text": "during"})])
            with pytest.raises(StorageError):
                await queue.lanes()
        finally:
            pg_server.start()
        after = Command("sendMessage", {"chat_id": 1, "text": "after"})
        for _ in range(50):  # the pool replaces its dead connections as they are used
            try:
                await queue.put([after])
                break
            except StorageError:
                await asyncio.sleep(0.1)
        assert queue.problem() == "the database is unreachable"
        assert await queue.check() is None and queue.problem() is None
        stored = await queue.get(before.id)
        assert stored is not None and stored.status is Status.QUEUED
        assert await queue.get(after.id) is not None
    finally:
        await queue.close()


async def test_a_gateway_on_postgres_delivers_and_answers_503_while_it_is_down(
    pg_server: PgServer, pg_dsn: str, gateway_factory: GatewayFactory, sandbox: Sandbox
) -> None:
    await sandbox.create_chat(USER)
    env = {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN": pg_dsn}
    async with gateway_factory(env) as gw:
        status, body = await gw.enqueue({"text": "one"})
        assert status == 202, body
        assert (await gw.command(body["id"], wait=10))["status"] == "sent"
        async with gw.http.get(f"{gw.url}/healthz") as resp:
            health = await resp.json()
            assert resp.status == 200, health
            assert (health["role"], health["leader"]) == ("leader", health["replica"])
        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            text = await resp.text()
            assert "gateway_leader 1.0" in text and "gateway_leader_elections 1.0" in text

        pg_server.stop()
        try:
            url = gw.url + "/enqueue_command"
            async with gw.http.post(url, json={"text": "lost?"}, headers=gw.auth) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == str(c.STORAGE_RETRY_AFTER_SECONDS)
                assert (await resp.json())["error"]["code"] == "storage_unavailable"
        finally:
            pg_server.start()

        accepted = None
        for _ in range(50):
            status, body = await gw.enqueue({"text": "two"})
            if status == 202:
                accepted = body["id"]
                break
            assert status == 503
            await asyncio.sleep(0.1)
        assert accepted is not None
        assert (await gw.command(accepted, wait=20))["status"] == "sent"
    texts = [m["text"] for m in await sandbox.messages(USER)]
    assert texts[0] == "one" and texts[-1] == "two"


def test_the_dsn_comes_from_a_secrets_file(workspace: Workspace) -> None:
    dsn_file = workspace.write("config/secrets/queue_dsn", "postgresql://u:pw@db:5432/gw\n")
    config = workspace.config(
        "http://127.0.0.1:1",
        {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN_FILE": str(dsn_file)},
    )
    assert config.queue_dsn.reveal() == "postgresql://u:pw@db:5432/gw"
    assert "pw" not in repr(config)

    dsn_file.chmod(0o644)
    with pytest.raises(ConfigError, match="queue_dsn: secrets file is accessible"):
        workspace.config(
            "http://127.0.0.1:1",
            {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN_FILE": str(dsn_file)},
        )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "needs dsn, dsn_file or GATEWAY_QUEUE_DSN"),
        ({"GATEWAY_QUEUE_DSN": "mysql://u:secret@h/db"}, "not a PostgreSQL URL"),
        ({"GATEWAY_QUEUE_DSN_FILE": "config/secrets/missing"}, "cannot read the DSN file"),
    ],
)
def test_a_postgres_backend_needs_a_dsn(
    workspace: Workspace, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        workspace.config("http://127.0.0.1:1", {"GATEWAY_QUEUE_BACKEND": "postgres", **env})
    assert "secret" not in str(caught.value).replace("secrets/", "")


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, while in use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_check_reports_the_database_without_migrating_it(
    pg_server: PgServer, pg_dsn: str, workspace: Workspace
) -> None:
    env = {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN": pg_dsn}
    config = workspace.config("http://127.0.0.1:1", env)
    fresh = await postgres_check(config)
    assert (fresh.status, fresh.detail.split(", ")[1]) == ("ok", f"schema 0/{SCHEMA_VERSION}")

    queue = PostgresQueue(pg_dsn)
    await queue.open()
    await queue.put([Command("sendMessage", {"chat_id": 1, "text": "waiting"})])
    await queue.close()
    ready = await postgres_check(config)
    assert ready.status == "ok"
    assert f"schema {SCHEMA_VERSION}/{SCHEMA_VERSION}, 1 waiting" in ready.detail

    with socket_closed_port() as port:
        down = dataclasses.replace(
            config, queue_dsn=Secret(f"postgresql://u:hunter2@127.0.0.1:{port}/db")
        )
        failed = await postgres_check(down)
    assert failed.status == "fail" and "hunter2" not in failed.detail


def test_updates_list_failed_reads_postgres(
    pg_dsn: str,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def record() -> None:
        queue = PostgresQueue(pg_dsn)
        await queue.open()
        failure = FailedUpdate(4242, 7, T0, "message.date: missing", "nothing", "{}")
        await queue.record_update(UpdateRecord(4242, 7, "d", T0, failure), [], 0.0)
        await queue.close()

    asyncio.run(record())
    monkeypatch.chdir(workspace.root)
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_QUEUE_BACKEND", "postgres")
    monkeypatch.setenv("GATEWAY_QUEUE_DSN", pg_dsn)
    monkeypatch.setenv("GATEWAY_SERVER_PUBLIC_URL", f"https://{workspace.host}:8443")
    assert cli.main(["updates", "list", "--failed"]) == 0
    assert "update 7: message.date: missing; nothing" in capsys.readouterr().out


@dataclasses.dataclass
class Member:
    """One replica's election, with what its callbacks saw."""

    queue: PostgresQueue
    leadership: Leadership
    task: asyncio.Task[None]
    elected: list[int]
    work: list[str]
    final: list[str]


@contextlib.asynccontextmanager
async def member(
    dsn: str, name: str, events: list[tuple[float, str, str]] | None = None
) -> AsyncIterator[Member]:
    queue = PostgresQueue(dsn)
    await queue.open()
    queue.clustered = True
    elected: list[int] = []
    work: list[str] = []
    final: list[str] = []

    async def on_elected(epoch: int) -> None:
        elected.append(epoch)
        if events is not None:
            events.append((time.monotonic(), name, "elected"))

    async def on_deposed() -> None:
        if events is not None:
            events.append((time.monotonic(), name, "deposed"))

    leadership = Leadership(
        dsn,
        queue,
        name,
        on_elected=on_elected,
        on_deposed=on_deposed,
        on_work=work.extend,
        on_final=final.append,
    )
    task = asyncio.create_task(leadership.run())
    try:
        yield Member(queue, leadership, task, elected, work, final)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await queue.close()


async def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_one_leader_fenced_by_epoch_and_notified_of_work_and_finals(pg_dsn: str) -> None:
    async with member(pg_dsn, "a") as a, member(pg_dsn, "b") as b:
        await eventually(lambda: "leader" in (a.leadership.role, b.leadership.role))
        await eventually(lambda: bool(a.leadership.leader and b.leadership.leader))
        leader, follower = (a, b) if a.leadership.role == "leader" else (b, a)
        assert follower.leadership.role == "follower"
        assert follower.leadership.leader == leader.leadership.identity

        # Work accepted by the follower reaches the leader; a final status reaches everyone.
        command = Command("sendMessage", {"chat_id": 9, "text": "x"})
        await follower.queue.put([command])
        await eventually(lambda: "9" in leader.work)
        assert follower.queue.epoch is None
        assert await follower.queue.claim("9", T0) is None  # not the leader: refused
        claimed = await leader.queue.claim("9", T0)
        assert claimed is not None
        await leader.queue.complete(command.id, {"message_id": 1}, T0)
        await eventually(lambda: command.id in follower.final)

        # The leader goes; the follower takes over with the next epoch, and the old
        # leader's queue (its epoch now stale) can claim nothing.
        old_epoch = leader.queue.epoch
        second = Command("sendMessage", {"chat_id": 9, "text": "y"})
        await follower.queue.put([second])
        leader.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leader.task
        await eventually(lambda: follower.leadership.role == "leader")
        assert follower.elected and follower.elected[-1] == (old_epoch or 0) + 1
        leader.queue.epoch = old_epoch  # a deposed leader that missed its deposition
        assert await leader.queue.claim("9", T0) is None
        taken = await follower.queue.claim("9", T0)
        assert taken is not None and taken.id == second.id


async def test_migrate_queue_moves_the_work_from_sqlite_in_order(
    pg_dsn: str, tmp_path: Path
) -> None:
    source = tmp_path / "gateway.db"
    old = SqliteQueue(source)
    await old.open()
    now = time.time()
    first, second, third = (
        Command("sendMessage", {"chat_id": 1, "text": t}, created_at=now) for t in "abc"
    )
    other = Command("sendMessage", {"chat_id": 2, "text": "d"}, created_at=now)
    keyed = Command("sendMessage", {"chat_id": 3, "text": "e"}, idempotency_key="k", created_at=now)
    done = Command("sendMessage", {"chat_id": 3, "text": "f"}, created_at=now)
    question = Command("sendMessage", {"chat_id": 4, "text": "ok?"}, created_at=now)
    await old.put([first, second, other, keyed, done, question])
    await old.put([third])
    await old.claim("1", now)  # `a` was being sent: it goes back to queued
    await old.save_part(first.id, 0, {"message_id": 7}, now)
    for command in (keyed, done, question):
        await old.claim(command.lane, now)
    await old.complete(keyed.id, {"message_id": 8}, now)
    await old.complete(done.id, {"message_id": 9}, now)
    await old.complete(question.id, {"message_id": 10}, now, Status.AWAITING_REPLY)
    await old.close()

    moved = await migrate_queue(source, pg_dsn, now)
    assert moved == Moved(queued=4, questions=1, keys_only=1, parts=1, skipped=0)
    again = await migrate_queue(source, pg_dsn, now)
    assert again == Moved(queued=0, questions=0, keys_only=0, parts=0, skipped=6)

    new = PostgresQueue(pg_dsn)
    await new.open()
    try:
        assert await new.get(done.id) is None
        assert [c.id for c in await new.awaiting()] == [question.id]
        found = await new.find_idempotent("k", now - 1)
        assert found is not None and found.id == keyed.id and found.status is Status.SENT
        texts = []
        while (claimed := await new.claim("1", now)) is not None:
            texts.append(claimed.params["text"])
            if claimed.id == first.id:
                assert claimed.result == [{"message_id": 7}]  # the part already sent
            await new.complete(claimed.id, True, now)
        assert texts == ["a", "b", "c"]
        assert set(await new.lanes()) == {"2"}
    finally:
        await new.close()


async def test_a_question_asked_on_one_replica_is_answered_through_another(
    pg_dsn: str, gateway_factory: GatewayFactory, sandbox: Sandbox, workspace: Workspace
) -> None:
    """Asked through A (the leader); A stops; B takes over, gets the webhook, and the tap
    that lands on B answers the question A asked."""
    await sandbox.create_chat(USER)
    env = {"GATEWAY_QUEUE_BACKEND": "postgres", "GATEWAY_QUEUE_DSN": pg_dsn}
    async with contextlib.AsyncExitStack() as outer:
        first = contextlib.AsyncExitStack()
        a = await first.enter_async_context(gateway_factory(env))
        b_root = workspace.root / "replica-b"
        shutil.copytree(workspace.root / "config", b_root / "config")  # A's secrets
        b_host = free_loopback_address()
        write_certificate(b_root / "certs", b_host, 30)
        b_config = Workspace(b_root, b_host).config(sandbox.url, env)
        b_app = await outer.enter_async_context(serve(b_config))
        context = client_ssl_context(b_config.certificate_path.read_bytes())
        b_http = await outer.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        )
        assert b_app[keys.REPLICA].leadership.role == "follower"

        expect = {"buttons": [["Approve", "Reject"]], "timeout_s": 600}
        status, body = await a.enqueue(
            {"text": "Ship it?", "chat_id": USER, "expect_reply": expect}
        )
        assert status == 202, body
        for _ in range(200):
            if (await a.command(body["id"]))["status"] == "awaiting_reply":
                break
            await asyncio.sleep(0.05)
        [message] = await sandbox.wait_messages(USER, 1)

        await first.aclose()  # A goes; B leads and registers its own webhook
        await eventually(lambda: b_app[keys.WEBHOOK].registered)
        assert b_app[keys.REPLICA].leadership.role == "leader"
        buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
        data = next(b["callback_data"] for b in buttons if b["text"] == "Approve")
        tap = {"user_id": USER, "chat_id": USER, "message_id": message["message_id"], "data": data}
        await sandbox.control("POST", "callbacks", tap)

        url = f"{b_config.public_url}/commands/{body['id']}"
        auth = {"Authorization": f"Bearer {workspace.token}"}
        async with b_http.get(url, params={"wait": "10"}, headers=auth) as resp:
            done = await resp.json()
    assert done["status"] == "answered", done
    assert done["reply"]["answer"] == "Approve"


async def test_a_leader_cut_off_from_the_database_stops_before_another_leads(
    pg_server: PgServer, pg_dsn: str
) -> None:
    """A's link to PostgreSQL goes silent (a proxy swallows the answers): A steps down on
    its own; only then, its session closed, does B get the lock."""
    proxy = TcpProxy("127.0.0.1", pg_server.port)
    await proxy.start()
    through_proxy = pg_server.dsn(pg_dsn.rsplit("/", 1)[1], port=proxy.port)
    events: list[tuple[float, str, str]] = []
    try:
        async with member(through_proxy, "a", events) as a:
            await eventually(lambda: a.leadership.role == "leader")
            async with member(pg_dsn, "b", events) as b:
                await eventually(lambda: b.leadership.leader == "a")
                proxy.answering = False
                await eventually(lambda: b.leadership.role == "leader", seconds=20)
                assert a.leadership.role == "follower"
    finally:
        await proxy.stop()
    order = [(who, what) for _, who, what in events]
    assert order[:3] == [("a", "elected"), ("a", "deposed"), ("b", "elected")], order
