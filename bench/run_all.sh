#!/usr/bin/env bash
# Run every benchmark in turn (about 6 minutes, 11 with PostgreSQL); results go to bench/results/*.json.
# The enqueue benchmark is repeated with wrk as the load generator when wrk is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python

$PY bench/enqueue.py
if command -v wrk >/dev/null; then
    $PY bench/enqueue.py --client wrk
fi
$PY bench/delivery.py
$PY bench/latency.py
$PY bench/memory.py
$PY bench/outage.py
$PY bench/media.py
$PY bench/inlets.py
$PY bench/cli_startup.py
# The PostgreSQL benches need PostgreSQL's server binaries (Debian: apt-get install postgresql).
if command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    $PY bench/enqueue_pg.py
    $PY bench/failover.py
fi
