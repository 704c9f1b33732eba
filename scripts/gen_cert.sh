#!/usr/bin/env bash
# Generate the webhook's self-signed certificate and key.
# Usage: scripts/gen_cert.sh --host HOST_OR_IP [--days 365] [--out certs/] [--force]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -x .venv/bin/python ]]; then
    exec .venv/bin/python -m gateway gen-cert "$@"
else
    exec python3 -m gateway gen-cert "$@"
fi
