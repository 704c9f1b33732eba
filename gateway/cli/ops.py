"""The operations commands: `gateway check`, `backup`, `migrate-queue` and `gen-cert`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gateway.cli.common import EXIT_FAILURE, fail
from gateway.errors import ConfigError, GatewayError


def cmd_check(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.ops.check import run_checks

    checks = asyncio.run(run_checks(args.config, os.environ))
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        report = {"ok": not failed, "checks": [check.as_dict() for check in checks]}
        print(json.dumps(report, indent=2))
    else:
        for check in checks:
            print(check.line())
    return EXIT_FAILURE if failed else 0


def cmd_backup(args: argparse.Namespace) -> int:
    from gateway.config import path_setting
    from gateway.ops.backup import backup_database, backup_media

    target = Path(args.path)
    media_target = target.with_name(target.name + ".media")
    try:
        source = path_setting(args.config, os.environ, "queue", "path")
        media_dir = path_setting(args.config, os.environ, "media", "dir")
        if media_target.exists():
            raise ConfigError(f"{media_target} already exists; choose a new name for the backup")
        info = backup_database(source, target)
        media = backup_media(target, media_dir, media_target)
    except ConfigError as exc:
        return fail(str(exc))
    print(
        f"backed up {source} to {info.path}: {info.commands} command(s), "
        f"schema version {info.schema_version}, {info.size} bytes"
    )
    if media is not None:
        print(
            f"and {media.files} file(s) queued commands still need to {media.directory} "
            f"({media.size} bytes); restore them into [media] dir ({media_dir})"
        )
        if media.missing:
            print(
                f"warning: {media.missing} file(s) were gone (their commands were delivered "
                "after the snapshot was taken)",
                file=sys.stderr,
            )
    return 0


def cmd_migrate_queue(args: argparse.Namespace) -> int:
    import asyncio
    from urllib.parse import urlsplit

    from gateway.ops.migrate import migrate_queue

    dsn = args.target or os.environ.get("GATEWAY_QUEUE_DSN", "")
    if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        return fail("--to (or GATEWAY_QUEUE_DSN) must be a postgresql://... URL")
    try:
        media = Path(args.media) if args.media else None
        moved = asyncio.run(migrate_queue(Path(args.source), dsn, time.time(), media))
    except GatewayError as exc:
        return fail(str(exc))
    print(
        f"moved {moved.queued} queued command(s), {moved.questions} open question(s), "
        f"{moved.keys_only} delivered command(s) kept for their idempotency key and "
        f"{moved.parts} sent part(s), with {moved.files} file(s); {moved.skipped} already "
        "there. Start the gateway with "
        '[queue] backend = "postgres" now.'
    )
    return 0


def cmd_gen_cert(args: argparse.Namespace) -> int:
    from gateway.certs import run_gen_cert

    return run_gen_cert(args)
