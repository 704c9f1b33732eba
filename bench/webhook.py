"""Webhook throughput: the gateway's webhook vs aiogram's `SimpleRequestHandler`, over one TLS.

Two scenarios, each in alternating rounds (gateway, aiogram, gateway, ...) after a warm-up:

- `stranger`: a private text message from a user who is not allowed (no refusal text set);
- `command`: `/report now` from the allowed user, a `[[routes]]` command: the gateway stores a
  dispatch for the route's service durably (with the update's dedup record) before its 200;
  `aiogram_server.py` stores one command in the gateway's `SqliteQueue` before its answer.

Both servers listen on port 8443 of their own 127.x.y.z address with a certificate generated
the same way, with the same secret token; the requests are byte for byte the same (each its own
`update_id`). The route's service is a socket that accepts and never answers (timeout 300 s):
the gateway's worker holds one dispatch in flight and stays idle, so what is measured is the
front door. While aiogram is measured the gateway is paused (SIGSTOP).

    .venv/bin/python bench/webhook.py [--rounds 5] [--seconds 5] [--concurrency 32]
        [--client aiohttp] [--scenarios stranger command]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import aiohttp
from common import (
    DEMO_USER,
    PYTHON,
    Service,
    Workspace,
    add_client_option,
    clean_env,
    cpu_seconds,
    gateway_process,
    https_session,
    load_parser,
    make_workspace,
    parse_load_args,
    plain_session,
    running,
    sandbox_process,
    scrape_metrics,
    temp_root,
    write_result,
)
from enqueue import Round, children_cpu_seconds, cpu_per_request, parse_wrk, paused

WEBHOOK_PATH = "/telegram/webhook"
STRANGER = 2222
SCENARIOS = ("stranger", "command")
MAX_REQUESTS_PER_ROUND = 1_000_000
#: Each round's update ids start here times the round's number: never one id twice.
ID_BLOCK = 10_000_000

#: Stands for the update's id (and message id) in the templates below.
_ID_MARK = 987654321987


def _template(user: int, name: str, text: str, **extra: object) -> str:
    """A private message's update as Telegram sends it, with `{ID}` for update_id and
    message_id (the Lua script and the aiohttp client fill it in the same way)."""
    person = {"first_name": name, "username": name.lower()}
    update = {
        "update_id": _ID_MARK,
        "message": {
            "message_id": _ID_MARK,
            "date": 1764460800,
            "chat": {"id": user, **person, "type": "private"},
            "from": {"id": user, "is_bot": False, **person, "language_code": "en"},
            "text": text,
            **extra,
        },
    }
    return json.dumps(update).replace(str(_ID_MARK), "{ID}")


UPDATES = {
    "stranger": _template(STRANGER, "Eve", "hello, bot"),
    "command": _template(
        DEMO_USER,
        "Ada",
        "/report now",
        entities=[{"offset": 0, "length": 7, "type": "bot_command"}],
    ),
}

WRK_SCRIPT = """
local n = BASE
request = function()
  n = n + 1
  local body = string.gsub('TEMPLATE', '{ID}', tostring(n))
  local headers = {["Content-Type"] = "application/json",
                   ["X-Telegram-Bot-Api-Secret-Token"] = "SECRET"}
  return wrk.format("POST", "PATH", headers, body)
end
"""

Loader = Callable[[str, Service, str, int], Awaitable[Round]]


def wrk_loader(
    concurrency: int, seconds_of: Callable[[], float], workdir: Path, secret: str
) -> Loader:
    """Rounds driven by `wrk -t1`; a script per round (its own block of update ids)."""

    async def load(name: str, service: Service, scenario: str, base: int) -> Round:
        seconds = seconds_of()
        script = workdir / f"webhook-{base}.lua"
        script.write_text(
            WRK_SCRIPT.replace("BASE", str(base))
            .replace("TEMPLATE", UPDATES[scenario])
            .replace("SECRET", secret)
            .replace("PATH", WEBHOOK_PATH)
        )
        argv = [
            *("wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s"),
            *("-s", str(script), service.url + WEBHOOK_PATH),
        ]
        server_cpu, client_cpu = cpu_seconds(service.pid), children_cpu_seconds()
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        server_cpu = cpu_seconds(service.pid) - server_cpu
        client_cpu = children_cpu_seconds() - client_cpu
        return parse_wrk(name, out.decode(), server_cpu, client_cpu)

    return load


def aiohttp_loader(
    concurrency: int,
    seconds_of: Callable[[], float],
    sessions: dict[str, aiohttp.ClientSession],
    secret: str,
) -> Loader:
    """Rounds driven by this process (when wrk is not installed)."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}

    async def load(name: str, service: Service, scenario: str, base: int) -> Round:
        template = UPDATES[scenario]
        url = service.url + WEBHOOK_PATH
        counts = {"ok": 0, "errors": 0}
        deadline = time.monotonic() + seconds_of()
        http = sessions[name]

        async def worker(offset: int) -> None:
            n = offset
            while time.monotonic() < deadline and n < MAX_REQUESTS_PER_ROUND:
                body = template.replace("{ID}", str(base + n + 1)).encode()
                n += concurrency
                try:
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        counts["ok" if resp.status == 200 else "errors"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1

        server_cpu, client_cpu = cpu_seconds(service.pid), time.process_time()
        start = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - start
        return Round(
            name,
            counts["ok"],
            counts["errors"],
            elapsed,
            cpu_seconds(service.pid) - server_cpu,
            time.process_time() - client_cpu,
        )

    return load


@contextlib.contextmanager
def silent_service() -> Iterator[str]:
    """A listening socket that never accepts: the route's service, which never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/report"


def write_gateway_config(ws: Workspace, service_url: str) -> None:
    """The `[[routes]]` entry the `command` scenario uses."""
    (ws.root / "config" / "gateway.toml").write_text(
        "[[routes]]\n"
        'command = "report"\n'
        f'url = "{service_url}"\n'
        'secret_file = "config/secrets/report.key"\n'
        "timeout_s = 300\n"
        'description = "bench"\n'
    )


@contextlib.asynccontextmanager
async def aiogram_process(
    ws: Workspace, secret_file: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Service]:
    argv = [
        PYTHON,
        str(Path(__file__).with_name("aiogram_server.py")),
        *("--host", ws.host, "--cert", str(ws.cert_path), "--key", str(ws.key_path)),
        *("--token-file", str(ws.root / "config" / "secrets" / "bot_api.txt")),
        *("--secret-file", str(secret_file), "--allowed", str(DEMO_USER)),
        *("--queue", str(ws.root / "aiogram.db")),
    ]
    async with running(
        "aiogram", argv, ws.root, clean_env({}), ws.gateway_url, "/healthz", http
    ) as s:
        yield s


def summarise(rounds: dict[str, list[Round]]) -> dict[str, object]:
    """Per scenario: medians, gateway/aiogram ratio (of medians and median of pairs), CPU."""
    targets = {"stranger": 1.0, "command": 0.8}
    out: dict[str, object] = {}
    for scenario, rs in rounds.items():
        gw = [r for r in rs if r.server == "gateway"]
        ag = [r for r in rs if r.server == "aiogram"]
        g, a = statistics.median(r.rate for r in gw), statistics.median(r.rate for r in ag)
        out[scenario] = {
            "gateway_median_rps": round(g, 1),
            "aiogram_median_rps": round(a, 1),
            "ratio": round(g / a, 3),
            "ratio_median_of_pairs": round(
                statistics.median(x.rate / y.rate for x, y in zip(gw, ag, strict=True)), 3
            ),
            "target_ratio": targets[scenario],
            "met": g / a >= targets[scenario],
            "gateway_cpu_us_per_request": cpu_per_request(gw, server=True),
            "aiogram_cpu_us_per_request": cpu_per_request(ag, server=True),
            "errors": sum(r.errors for r in rs),
            "rounds": [{**asdict(r), "rate": round(r.rate, 1)} for r in rs],
        }
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    with temp_root() as root, silent_service() as service_url:
        ws = make_workspace(root / "ws-gateway")
        ag_ws = make_workspace(root / "ws-aiogram", exclude_hosts=[ws.host])
        write_gateway_config(ws, service_url)
        async with contextlib.AsyncExitStack() as stack:
            control = await stack.enter_async_context(plain_session())
            gw_http = await stack.enter_async_context(https_session(ws, args.concurrency))
            ag_http = await stack.enter_async_context(https_session(ag_ws, args.concurrency))
            sandbox = await stack.enter_async_context(sandbox_process(root, control))
            gw = await stack.enter_async_context(
                gateway_process(ws, sandbox.url, gw_http, log_level=args.gateway_log_level)
            )
            secret_file = ws.root / "config" / "secrets" / "webhook_secret.txt"
            secret = secret_file.read_text().strip()
            ag = await stack.enter_async_context(aiogram_process(ag_ws, secret_file, ag_http))
            seconds = {"now": args.warmup}
            load = (
                wrk_loader(args.concurrency, lambda: seconds["now"], root, secret)
                if args.client == "wrk"
                else aiohttp_loader(
                    args.concurrency,
                    lambda: seconds["now"],
                    {"gateway": gw_http, "aiogram": ag_http},
                    secret,
                )
            )
            servers = [("gateway", gw), ("aiogram", ag)]
            block = 0
            rounds: dict[str, list[Round]] = {}
            for scenario in args.scenarios:
                seconds["now"] = args.warmup
                for name, service in servers:
                    block += 1
                    with paused(None if name == "gateway" else gw):
                        await load(name, service, scenario, block * ID_BLOCK)
                seconds["now"] = args.seconds
                for index in range(args.rounds):
                    for name, service in servers:
                        block += 1
                        with paused(None if name == "gateway" else gw):
                            result = await load(name, service, scenario, block * ID_BLOCK)
                        print(
                            f"  {scenario:<8} round {index + 1} {name:<8} {result.rate:8.0f} req/s",
                            flush=True,
                        )
                        rounds.setdefault(scenario, []).append(result)
            counters = await scrape_metrics(gw_http, gw.url)
        gateway_log = gw.log.read_text(errors="replace").splitlines()[-20:]
    return {
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "gateway_log_level": args.gateway_log_level,
            "client": "wrk -t1" if args.client == "wrk" else "aiohttp (this process)",
            "gateway_paused_during_aiogram_rounds": True,
            "aiogram": "SimpleRequestHandler(handle_in_background=False)",
            "queue": "sqlite (synchronous=FULL), both sides",
            "updates": UPDATES,
        },
        **summarise(rounds),
        "gateway_updates_total": counters.get("gateway_webhook_updates_total"),
        "gateway_commands_accepted_total": counters.get("gateway_commands_accepted_total"),
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
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    add_client_option(
        parser, "wrk?", "load generator: wrk when installed (default), else this process"
    )
    return parse_load_args(parser)


def main() -> None:
    args = parse_args()
    print(
        f"webhook: {args.rounds} x {args.seconds:g}s per side, concurrency {args.concurrency}, "
        f"client {args.client}"
    )
    result = asyncio.run(run(args))
    path = write_result("webhook" if args.client == "aiohttp" else "webhook-wrk", result)
    for scenario in args.scenarios:
        s = result[scenario]
        assert isinstance(s, dict)
        print(
            f"{scenario}: gateway {s['gateway_median_rps']} req/s, aiogram "
            f"{s['aiogram_median_rps']} req/s; ratio {s['ratio']} (target >= "
            f"{s['target_ratio']}: {'met' if s['met'] else 'NOT met'}); CPU/request gateway "
            f"{s['gateway_cpu_us_per_request']} us, aiogram {s['aiogram_cpu_us_per_request']} us; "
            f"errors {s['errors']}"
        )
    print(f"-> {path}  (load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])})")


if __name__ == "__main__":
    main()
