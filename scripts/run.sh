#!/usr/bin/env bash
# Set up and run the gateway. With no bot token configured it runs in sandbox mode.
# Extra arguments go to `gateway run` (e.g. --config config/gateway.toml).
# When no certificate exists, the gateway makes a self-signed one for public_url's host
# (in sandbox mode: [server] host, or 127.0.0.1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
ensure_venv

exec "$VENV/bin/python" -m gateway run --make-certificate "$@"
