"""Secrets never reach the log: one redacting filter per handler, whatever the installs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from gateway import redact


@pytest.fixture
def root_handler() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    """A handler of the root logger writing to a buffer, removed afterwards."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler, out
    finally:
        root.removeHandler(handler)


def test_installing_again_scrubs_every_secret_with_one_filter(
    root_handler: tuple[logging.Handler, io.StringIO],
) -> None:
    handler, out = root_handler
    redact.install()  # at start-up, before the configuration is read
    redact.install(["s3cret-webhook-value"])  # once it has revealed the secrets
    redact.install(["another-secret-value"])
    assert len([f for f in handler.filters if isinstance(f, redact.RedactingFilter)]) == 1
    logger = logging.getLogger("tests.redact")
    logger.warning("%s %s 4242:AAAAbbbbCCCCdddd", "s3cret-webhook-value", "another-secret-value")
    assert out.getvalue().strip() == "*** *** 4242:***"
