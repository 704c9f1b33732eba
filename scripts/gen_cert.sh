#!/usr/bin/env bash
# Generate the webhook's self-signed certificate and key.
# Usage: scripts/gen_cert.sh --host HOST_OR_IP [--days 365] [--out DIR] [--force]
# --out is relative to the directory you run this from; without it the files go to the
# project's certs/ (where scripts/run.sh looks for them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv

out_given=0
for arg in "$@"; do
    case "$arg" in
        --out | --out=*) out_given=1 ;;
    esac
done
if [ "$out_given" = 1 ]; then
    exec "$VENV/bin/python" -m gateway gen-cert "$@"
fi
exec "$VENV/bin/python" -m gateway gen-cert --out "$ROOT/certs" "$@"
