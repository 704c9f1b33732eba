"""Who may post to an inlet: each kind's own credential, compared in constant time.

Alertmanager and Grafana send `Authorization: Bearer <secret>` (`http_config.authorization`,
the contact point's "Authorization header"); GitHub signs the raw body (`X-Hub-Signature-256:
sha256=<HMAC-SHA256 hex>`); GitLab sends the secret as `X-Gitlab-Token`. A generic inlet takes
the bearer token or the signature.
"""

from __future__ import annotations

import hashlib
import hmac

from multidict import CIMultiDictProxy

from gateway import constants as c
from gateway.inlets.config import Inlet


def authentic(inlet: Inlet, headers: CIMultiDictProxy[str], body: bytes) -> bool:
    """True when the request carries the inlet's credential."""
    secret = inlet.secret.reveal().encode()
    if inlet.kind in ("alertmanager", "grafana"):
        return _bearer(headers, secret)
    if inlet.kind == "github":
        return _signed(headers, secret, body)
    if inlet.kind == "gitlab":
        return hmac.compare_digest(headers.get(c.GITLAB_TOKEN_HEADER, "").encode(), secret)
    return _bearer(headers, secret) or _signed(headers, secret, body)


def signature(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _bearer(headers: CIMultiDictProxy[str], secret: bytes) -> bool:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), secret)


def _signed(headers: CIMultiDictProxy[str], secret: bytes, body: bytes) -> bool:
    presented = headers.get(c.GITHUB_SIGNATURE_HEADER, "").encode()
    expected = signature(secret.decode(), body).encode()
    return hmac.compare_digest(presented, expected)
