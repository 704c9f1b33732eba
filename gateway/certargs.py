"""The `gen-cert` options, apart from gateway.certs so that building the `gateway` parser
(`gateway --help`, `gateway token ...`) does not load the cryptography package."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.constants import (
    CERTIFICATE_FILENAME,
    DEFAULT_CERT_DAYS,
    DEFAULT_CERT_DIR,
    MAX_CERT_DAYS,
    PRIVATE_KEY_FILENAME,
)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= value <= MAX_CERT_DAYS:
        raise argparse.ArgumentTypeError(f"use 1 to {MAX_CERT_DAYS} days, not {value}")
    return value


def add_gen_cert_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``gen-cert`` options to ``parser`` (a standalone parser or a subcommand's)."""
    parser.add_argument(
        "--host",
        required=True,
        metavar="HOST_OR_IP",
        help="public DNS name or IP address Telegram will call (Telegram uses IPv4 only)",
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_CERT_DAYS,
        help=f"validity in days (default {DEFAULT_CERT_DAYS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_CERT_DIR),
        metavar="DIR",
        help=f"directory for {CERTIFICATE_FILENAME} and {PRIVATE_KEY_FILENAME} "
        f"(default {DEFAULT_CERT_DIR}/)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
