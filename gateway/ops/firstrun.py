"""First run: a self-signed certificate for `public_url`'s host when none exists yet.

`scripts/run.sh` (and the container) start the gateway with `--make-certificate`: sandbox mode
and a first real deployment then work without a separate `gen-cert` step, and the certificate
always names the host the webhook is registered at.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from gateway import constants as c
from gateway.certs import write_certificate
from gateway.config import Config
from gateway.errors import CertificateError

logger = logging.getLogger(__name__)


def make_missing_certificate(config: Config) -> Path | None:
    """Write a pair for public_url's host when neither file exists; return the certificate path.

    Does nothing when the gateway needs no certificate of its own, or when either file is
    there (an existing certificate is checked at start-up, never replaced). Configured paths
    with other file names than the defaults get a one-line instruction instead.
    """
    if not needs_certificate(config):
        return None
    cert, key = config.certificate_path, config.private_key_path
    if cert.exists() or key.exists():
        return None
    host = urlsplit(config.public_url).hostname or ""
    if (cert.name, key.name) != (c.CERTIFICATE_FILENAME, c.PRIVATE_KEY_FILENAME) or (
        cert.parent != key.parent
    ):
        raise CertificateError(
            f"{cert} does not exist; make it with scripts/gen_cert.sh --host {host} "
            f"(then point [server] certificate/private_key at the files it writes)"
        )
    write_certificate(cert.parent, host, c.DEFAULT_CERT_DAYS)
    logger.info("made a self-signed certificate for %s in %s", host, cert.parent)
    return cert


def needs_certificate(config: Config) -> bool:
    """The listener speaks TLS itself (not behind a proxy that terminates it)."""
    return config.server.tls
