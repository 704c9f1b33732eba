"""`gateway --help` and `gateway token list` start-up time against `python -c pass`.

Each round runs the three commands in a shuffled order, each as a fresh interpreter (the same
`sys.executable`, byte-code caches warm), in a throw-away directory holding a clients file
with one client; wall time from fork to exit. Medians over the rounds, side by side.
Target (issue 14): `token list` within 0.3 s of `python -c pass`.

    .venv/bin/python bench/cli_startup.py [--rounds 20] [--before DIR]

`--before DIR` adds the same two commands run from another source tree (e.g. an older commit's
`git archive HEAD~1 gateway | tar -x -C DIR`), through PYTHONPATH, to the same rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

from gateway.clients import add_client

TARGET_SECONDS = 0.3
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "gateway --help": ["-m", "gateway", "--help"],
    "gateway token list": ["-m", "gateway", "token", "list"],
}


def wall_time(args: list[str], cwd: Path, env: dict[str, str], source: str | None) -> float:
    if source:
        env = {**env, "PYTHONPATH": source}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before", default=None, help="another source tree to compare")
    args = parser.parse_args()
    commands: dict[str, tuple[list[str], str | None]] = {
        name: (argv, None) for name, argv in COMMANDS.items()
    }
    if args.before:
        source = str(Path(args.before).resolve())
        for name in ("gateway --help", "gateway token list"):
            commands[f"{name} (before)"] = (COMMANDS[name], source)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as tmp:
        root = Path(tmp)
        add_client(root / "config" / "secrets" / "api_clients.toml", "bench")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        for argv, source in commands.values():  # warm the byte-code and page caches
            wall_time(argv, root, env, source)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(max(1, args.rounds)):
            order = list(commands)
            random.shuffle(order)
            for name in order:
                argv, source = commands[name]
                times[name].append(wall_time(argv, root, env, source))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python -c pass"]
    print(f"{'command':<29} {'median s':>9} {'min s':>7} {'- python -c pass':>17}")
    for name, values in times.items():
        print(f"{name:<29} {medians[name]:9.3f} {min(values):7.3f} {medians[name] - base:17.3f}")
    over = medians["gateway token list"] - base
    met = over <= TARGET_SECONDS
    print(
        f"token list - python -c pass = {over:.3f} s (target <= {TARGET_SECONDS} s: "
        f"{'met' if met else 'NOT met'}); load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    path = write_result(
        "cli_startup",
        {
            "rounds": args.rounds,
            "before": args.before,
            "seconds": times,
            "median_seconds": medians,
            "token_list_over_python_s": over,
            "target_s": TARGET_SECONDS,
            "met": met,
            "loadavg_1m_before": load_before[0],
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
