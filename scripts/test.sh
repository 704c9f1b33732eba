#!/usr/bin/env bash
# Set up .venv with the test extras and run the whole suite: lint, type check, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k sandbox -x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
ensure_venv test

# tests/test_proxy.py puts a real nginx in front of the gateway: install it when we can.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ] &&
    command -v apt-get >/dev/null 2>&1; then
    echo "== installing nginx (for tests/test_proxy.py)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2 ||
        echo "warning: could not install nginx; tests/test_proxy.py will skip" >&2
fi

# The PostgreSQL queue backend's tests start a private server (initdb + pg_ctl): install it.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 &&
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing postgresql (for the postgres queue backend's tests)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 ||
        echo "warning: could not install postgresql; its tests will skip" >&2
fi

# tests/test_inlets_alertmanager.py posts alerts through a real Prometheus Alertmanager.
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1 &&
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing prometheus-alertmanager (for tests/test_inlets_alertmanager.py)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        prometheus-alertmanager >&2 ||
        echo "warning: could not install prometheus-alertmanager; its tests will skip" >&2
fi

echo "== ruff" >&2
"$VENV/bin/ruff" check gateway tests
echo "== mypy (strict)" >&2
"$VENV/bin/mypy" gateway
echo "== pytest" >&2
exec "$VENV/bin/python" -m pytest "$@"
