"""Enqueue throughput: `POST /enqueue_command` requests/s, gateway vs a bare aiohttp server.

Measures how many short-form enqueue requests per second the gateway (durable SQLite queue,
`synchronous=FULL`, its worker delivering to the sandbox at 30 messages/s in the background)
answers with 202 over HTTPS, against `bare_server.py` — aiohttp over the same TLS set-up whose
handler only parses the JSON body. Both listen on port 8443 of their own 127.x.y.z address with
a certificate generated the same way. One client (aiohttp, keep-alive, `--concurrency`
connections) sends the same bodies to both, in alternating rounds (gateway, bare, gateway,
...) after a warm-up round each; the figures are the medians over rounds and their ratio.

While the bare server is measured, the gateway is paused (SIGSTOP) so that its background
delivery does not take CPU from the baseline; `--no-pause` keeps it running throughout.
`--client wrk` drives the rounds with `wrk -t1` instead (if installed): the Python client costs
more CPU per request than the bare server does, and client and servers share the machine's cores.

    .venv/bin/python bench/enqueue.py [--rounds 5] [--seconds 5] [--concurrency 32] [--client wrk]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from common import (
    JSON_HEADERS,
    PYTHON,
    Service,
    Workspace,
    add_client_option,
    clean_env,
    cpu_seconds,
    create_chats,
    enqueue_body,
    gateway_process,
    https_session,
    load_parser,
    make_workspace,
    parse_load_args,
    plain_session,
    running,
    sandbox_json,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)

CHATS = 100
#: The durable baseline's name: the bare handler plus the gateway's SQLite queue.
DURABLE = "bare+queue"
#: Upper bound of requests per round, whatever the duration (keeps every loop bounded).
MAX_REQUESTS_PER_ROUND = 1_000_000


@dataclass(frozen=True)
class Round:
    """One timed round against one server."""

    server: str
    ok: int
    errors: int
    seconds: float
    server_cpu_seconds: float
    client_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def us_per_request(self, cpu_seconds: float) -> float:
        return 1e6 * cpu_seconds / max(self.ok, 1)


@dataclass(frozen=True)
class Target:
    """A server under test: its URL, its client session and its process."""

    name: str
    service: Service
    http: aiohttp.ClientSession


Loader = Callable[[Target, float], Awaitable[Round]]


def aiohttp_loader(concurrency: int) -> Loader:
    """Rounds driven by this process: `concurrency` keep-alive requests in flight."""
    bodies = [enqueue_body(chat) for chat in range(1, CHATS + 1)]

    async def load(target: Target, seconds: float) -> Round:
        url = f"{target.service.url}/enqueue_command"
        counts = {"ok": 0, "errors": 0}
        deadline = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            n = offset
            while time.monotonic() < deadline and n < MAX_REQUESTS_PER_ROUND:
                body = bodies[n % len(bodies)]
                n += concurrency
                try:
                    async with target.http.post(url, data=body, headers=JSON_HEADERS) as resp:
                        await resp.read()
                        counts["ok" if resp.status == 202 else "errors"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1

        server_cpu, client_cpu = cpu_seconds(target.service.pid), time.process_time()
        start = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - start
        server_cpu = cpu_seconds(target.service.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        return Round(target.name, counts["ok"], counts["errors"], elapsed, server_cpu, client_cpu)

    return load


#: wrk's request generator: the same bodies as the aiohttp client, chats round robin.
WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local body = '{"chat_id": ' .. (n % CHATS + 1) .. ', "text": "bench"}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}
  return wrk.format("POST", "/enqueue_command", headers, body)
end
"""
WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(ms|s|m)\b")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
WRK_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def wrk_loader(concurrency: int, workdir: Path, api_token: str) -> Loader:
    """Rounds driven by `wrk -t1` (one thread: the other core is the server's).

    Both servers get the gateway's API token (the bare server ignores it), so the requests are
    byte for byte the same; the script lives in the temporary workspace.
    """
    script = workdir / "enqueue.lua"
    script.write_text(WRK_SCRIPT.replace("CHATS", str(CHATS)).replace("TOKEN", api_token))

    async def load(target: Target, seconds: float) -> Round:
        argv = [
            *("wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s"),
            *("-s", str(script), f"{target.service.url}/enqueue_command"),
        ]
        server_cpu = cpu_seconds(target.service.pid)
        client_cpu = children_cpu_seconds()
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        server_cpu = cpu_seconds(target.service.pid) - server_cpu
        client_cpu = children_cpu_seconds() - client_cpu
        return parse_wrk(target.name, out.decode(), server_cpu, client_cpu)

    return load


def children_cpu_seconds() -> float:
    """CPU time of this process's reaped children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk(server: str, output: str, server_cpu: float, client_cpu: float) -> Round:
    """A Round from wrk's summary: 2xx answers over its measured duration."""
    total = WRK_TOTAL.search(output)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = WRK_NON_2XX.search(output)
    sockets = WRK_SOCKET_ERRORS.search(output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in sockets.groups()) if sockets else 0
    )
    requests = int(total.group(1))
    seconds = float(total.group(2)) * WRK_UNITS[total.group(3)]
    ok = requests - (int(non_2xx.group(1)) if non_2xx else 0)
    return Round(server, ok, errors, seconds, server_cpu, client_cpu)


@contextlib.contextmanager
def paused(service: Service | None) -> Iterator[None]:
    """SIGSTOP a process for the block (no-op for None); SIGCONT whatever happens."""
    if service is None:
        yield
        return
    os.kill(service.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(service.pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def bare_process(
    ws: Workspace, http: aiohttp.ClientSession, *, durable: bool = False
) -> AsyncIterator[Service]:
    """`bench/bare_server.py` on port 8443 of the workspace's address (with `--queue` in the
    workspace for the durable baseline)."""
    argv = [
        PYTHON,
        str(Path(__file__).with_name("bare_server.py")),
        "--host",
        ws.host,
        "--cert",
        str(ws.cert_path),
        "--key",
        str(ws.key_path),
        *(["--queue", str(ws.root / "var" / "bare.db")] if durable else []),
    ]
    async with running(
        DURABLE if durable else "bare",
        argv,
        ws.root,
        clean_env({}),
        ws.gateway_url,
        "/healthz",
        http,
    ) as service:
        yield service


async def alternate(
    targets: list[Target], load: Loader, args: argparse.Namespace, pause: Service | None
) -> list[Round]:
    """Warm up each, then rounds gateway, bare, [bare+queue,] gateway, bare, ...

    `pause` (the gateway) is stopped while the other servers are measured."""
    for target in targets:
        with paused(None if target.name == "gateway" else pause):
            await load(target, args.warmup)
    rounds: list[Round] = []
    for index in range(args.rounds):
        for target in targets:
            with paused(None if target.name == "gateway" else pause):
                result = await load(target, args.seconds)
            print(f"  round {index + 1} {target.name:<10} {result.rate:8.0f} req/s", flush=True)
            rounds.append(result)
    return rounds


def cpu_per_request(rounds: list[Round], *, server: bool) -> int:
    """Median CPU microseconds per answered request, of the server or of the client."""
    return round(
        statistics.median(
            r.us_per_request(r.server_cpu_seconds if server else r.client_cpu_seconds)
            for r in rounds
        )
    )


def summarise(rounds: list[Round]) -> dict[str, object]:
    """Medians per server and the gateway/bare ratio (of medians, and median of pairs); with
    the durable baseline, also its ratio to bare and the gateway's ratio to it."""
    by_server: dict[str, list[Round]] = {}
    for r in rounds:
        by_server.setdefault(r.server, []).append(r)
    medians = {name: statistics.median(r.rate for r in rs) for name, rs in by_server.items()}
    gw, bare = by_server["gateway"], by_server["bare"]
    pair_ratios = [g.rate / b.rate for g, b in zip(gw, bare, strict=True)]
    summary: dict[str, object] = {
        "gateway_median_rps": round(medians["gateway"], 1),
        "bare_median_rps": round(medians["bare"], 1),
        "ratio": round(medians["gateway"] / medians["bare"], 3),
        "ratio_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "target_ratio": 0.6,
        "met": medians["gateway"] / medians["bare"] >= 0.6,
        "cpu_us_per_request": {
            name: cpu_per_request(rs, server=True) for name, rs in by_server.items()
        },
        "gateway_cpu_us_per_request": cpu_per_request(gw, server=True),
        "bare_cpu_us_per_request": cpu_per_request(bare, server=True),
        "client_cpu_us_per_request": {
            name: cpu_per_request(rs, server=False) for name, rs in by_server.items()
        },
        "errors": sum(r.errors for r in rounds),
    }
    if DURABLE in medians:
        summary["durable_median_rps"] = round(medians[DURABLE], 1)
        summary["durable_ratio_to_bare"] = round(medians[DURABLE] / medians["bare"], 3)
        summary["gateway_ratio_to_durable"] = round(medians["gateway"] / medians[DURABLE], 3)
    return summary


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Start sandbox, gateway and bare server(s); measure; collect the gateway's counters."""
    with temp_root() as root:
        ws = make_workspace(root / "ws-gateway")
        bare_ws = make_workspace(root / "ws-bare", exclude_hosts=[ws.host])
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            gw_http = await stack.enter_async_context(https_session(ws, args.concurrency))
            bare_http = await stack.enter_async_context(https_session(bare_ws, args.concurrency))
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            await create_chats(control, sandbox.url, range(1, CHATS + 1))
            gw = await stack.enter_async_context(
                gateway_process(ws, sandbox.url, gw_http, log_level=args.gateway_log_level)
            )
            bare = await stack.enter_async_context(bare_process(bare_ws, bare_http))
            targets = [Target("gateway", gw, gw_http), Target("bare", bare, bare_http)]
            if args.durable_baseline:
                durable_ws = make_workspace(
                    root / "ws-durable", exclude_hosts=[ws.host, bare_ws.host]
                )
                durable_http = await stack.enter_async_context(
                    https_session(durable_ws, args.concurrency)
                )
                durable = await stack.enter_async_context(
                    bare_process(durable_ws, durable_http, durable=True)
                )
                targets.append(Target(DURABLE, durable, durable_http))
            pause = None if args.no_pause else gw
            load = (
                wrk_loader(args.concurrency, root, ws.api_token)
                if args.client == "wrk"
                else aiohttp_loader(args.concurrency)
            )
            rounds = await alternate(targets, load, args, pause)
            counters = await scrape_metrics(gw_http, gw.url)
            stats = await sandbox_json(control, sandbox.url, "GET", "stats")
        gateway_log = gw.log.read_text(errors="replace").splitlines()[-20:]
    return {
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "gateway_log_level": args.gateway_log_level,
            "client": "wrk -t1" if args.client == "wrk" else "aiohttp (this process)",
            "chats": CHATS,
            "gateway_paused_during_bare_rounds": not args.no_pause,
            "durable_baseline": args.durable_baseline,
            "queue": "sqlite (synchronous=FULL)",
        },
        **summarise(rounds),
        "rounds": [{**asdict(r), "rate": round(r.rate, 1)} for r in rounds],
        "gateway_accepted_total": counters.get("gateway_commands_accepted_total"),
        "gateway_sent_total": counters.get("gateway_commands_sent_total"),
        "sandbox_429": stats["too_many_requests"],
        "sandbox_max_global_per_second": stats["max_global_per_second"],
        "sandbox_max_chat_per_second": stats["max_chat_per_second"],
        "gateway_log": gateway_log,
    }


def parse_args() -> argparse.Namespace:
    parser = load_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--gateway-log-level",
        choices=["warning", "info"],
        default="warning",
        help="the gateway's --log-level (info, its default, adds the access log)",
    )
    parser.add_argument(
        "--no-pause", action="store_true", help="keep the gateway running in bare rounds"
    )
    parser.add_argument(
        "--no-durable-baseline",
        dest="durable_baseline",
        action="store_false",
        help=f"skip the third server ({DURABLE}: the bare handler plus the SQLite queue)",
    )
    add_client_option(
        parser, "aiohttp", "load generator: this process (default) or wrk, if installed"
    )
    return parse_load_args(parser)


def main() -> None:
    args = parse_args()
    print(
        f"enqueue: {args.rounds} x {args.seconds:g}s per side, concurrency {args.concurrency}, "
        f"client {args.client}"
    )
    result = asyncio.run(run(args))
    path = write_result("enqueue" if args.client == "aiohttp" else "enqueue-wrk", result)
    print(
        f"gateway {result['gateway_median_rps']} req/s, bare {result['bare_median_rps']} req/s "
        f"(medians); ratio {result['ratio']} (target >= 0.6: "
        f"{'met' if result['met'] else 'NOT met'}); CPU/request gateway "
        f"{result['gateway_cpu_us_per_request']} us, bare {result['bare_cpu_us_per_request']} us "
        f"(server CPU); "
        f"errors {result['errors']}"
    )
    if "durable_median_rps" in result:
        print(
            f"{DURABLE} {result['durable_median_rps']} req/s = {result['durable_ratio_to_bare']} "
            f"x bare (durability alone); gateway = {result['gateway_ratio_to_durable']} x {DURABLE}"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
