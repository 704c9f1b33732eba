"""`python -m gateway.ops.healthcheck`: the container's HEALTHCHECK, exit 0 when /healthz is 200.

It asks the listener on this machine, as configured (`[server] host`, `port`, `tls`): a wildcard
host is reached on loopback. The certificate is not verified (it names the public host, not
loopback, and nothing secret is sent); the answer must still be the gateway's 200.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from urllib.error import URLError

from gateway import constants as c
from gateway.config import load_config
from gateway.errors import ConfigError

TIMEOUT_SECONDS = 4.0


def main() -> int:
    try:
        config = load_config(None, os.environ)
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    host = config.server.host
    host = c.SANDBOX_HOST if host in c.WILDCARD_HOSTS else host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if config.server.tls else "http"
    url = f"{scheme}://{host}:{config.server.port}{c.HEALTH_PATH}"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as resp:
            healthy = resp.status == 200
    except (URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
