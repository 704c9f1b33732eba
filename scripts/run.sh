#!/usr/bin/env bash
# Set up and run the gateway. With no bot token configured it runs in sandbox mode.
# Extra arguments go to `gateway run` (e.g. --config config/gateway.toml).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
ensure_venv

# A certificate for 127.0.0.1 when none is configured or present (the sandbox-mode default).
if [ ! -f config/secrets/certificate.pem ] && [ ! -f certs/certificate.pem ] &&
    [ -z "${GATEWAY_SERVER_CERTIFICATE:-}" ]; then
    "$VENV/bin/python" -m gateway gen-cert --host "${GATEWAY_CERT_HOST:-127.0.0.1}" --out certs
fi

exec "$VENV/bin/python" -m gateway run "$@"
