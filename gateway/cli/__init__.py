"""The `gateway` command: run, sandbox, gen-cert, token, updates.

User mistakes end with one `error: ...` line on stderr and exit status 2; no traceback.
One module per command group: `run` (run, sandbox), `tokens`, `updates`, `ops` (check,
backup, migrate-queue, gen-cert); `parser` holds every command's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cli.common import EXIT_FAILURE, EXIT_USAGE, setup_logging
from gateway.cli.ops import cmd_backup, cmd_check, cmd_gen_cert, cmd_migrate_queue
from gateway.cli.parser import build_parser
from gateway.cli.run import cmd_run, cmd_sandbox
from gateway.cli.tokens import cmd_token
from gateway.cli.updates import cmd_updates

# Each command imports what it needs when it runs: the ones that do not talk to Telegram
# (`--help`, `token`, `gen-cert`, `backup`) never load aiogram, aiohttp, asyncpg or jinja2,
# which took seconds (aiogram's models alone) before any of them could start. So the command
# modules imported here import only the light modules at their top.

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "main", "setup_logging"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script and `python -m gateway`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    handlers = {
        "run": cmd_run,
        "sandbox": cmd_sandbox,
        "gen-cert": cmd_gen_cert,
        "token": cmd_token,
        "updates": cmd_updates,
        "backup": cmd_backup,
        "check": cmd_check,
        "migrate-queue": cmd_migrate_queue,
    }
    return int(handlers[args.command](args))
