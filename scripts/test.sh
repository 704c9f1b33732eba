#!/usr/bin/env bash
# Set up .venv with the test extras and run the whole suite: lint, type check, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k sandbox -x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
ensure_venv test

echo "== ruff" >&2
"$VENV/bin/ruff" check gateway tests
echo "== mypy (strict)" >&2
"$VENV/bin/mypy" gateway
echo "== pytest" >&2
exec "$VENV/bin/python" -m pytest "$@"
