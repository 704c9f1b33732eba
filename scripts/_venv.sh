# Sourced by the other scripts: make sure .venv exists and holds the project (and extras).
# Usage: ensure_venv [EXTRAS]   e.g. ensure_venv test
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    local extras="${1:-}"
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    local stamp="$VENV/.installed${extras:+-$extras}"
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        py="$(find_python)"
        echo "creating $VENV with $py" >&2
        "$py" -m venv "$VENV"
    fi
    # An install with extras also holds the plain project: that stamp will do for no extras.
    if [ -z "$extras" ] && [ ! -f "$stamp" ]; then
        for other in "$VENV"/.installed-*; do
            [ -f "$other" ] && [ ! "$ROOT/setup.cfg" -nt "$other" ] && stamp="$other"
        done
    fi
    # Reinstall when setup.cfg changed since the last install (new dependencies).
    if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
        echo "installing the project into $VENV${extras:+ (with [$extras])}" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
        touch "$stamp"
    fi
}
