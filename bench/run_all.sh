#!/usr/bin/env bash
# Run every benchmark in turn (about 6 minutes); results go to bench/results/*.json.
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
