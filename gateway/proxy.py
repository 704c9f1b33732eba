"""Reverse-proxy mode: the real client behind a trusted proxy, and which certificate to upload.

With `[server] tls = false` a proxy (nginx, Caddy, Traefik) terminates TLS and forwards plain
HTTP. Its `X-Forwarded-For` is believed only when the peer is in `[telegram] trusted_proxies`
(`webhook.SourceGuard` walks the chain); handlers, the access log and the webhook's allow-list
then all see the client's address, not the proxy's.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_request import BaseRequest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.certs import CertificateInfo
from gateway.config import Config
from gateway.errors import CertificateError
from gateway.http import Handler
from gateway.webhook import SourceGuard

CLIENT_ADDRESSES = web.AppKey("client_addresses", SourceGuard)
FORWARDED_FOR = "X-Forwarded-For"


def install(app: web.Application, config: Config) -> None:
    """Resolve client addresses through `trusted_proxies` for every handler of `app`."""
    proxies = config.telegram.trusted_proxies
    app[CLIENT_ADDRESSES] = SourceGuard((), proxies, enabled=bool(proxies))
    if proxies:
        app.middlewares.insert(0, real_client)


def client_address(request: BaseRequest) -> str | None:
    """The address of whoever made `request`: the peer, or what trusted proxies forwarded."""
    app = request.app if isinstance(request, web.Request) else None
    guard = app.get(CLIENT_ADDRESSES) if app is not None else None
    if guard is None or not guard.enabled:
        return request.remote
    return guard.client_address(request.remote, request.headers.getall(FORWARDED_FOR, []))


@web.middleware
async def real_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hand the rest of the app a request whose `remote` is the real client."""
    address = client_address(request)
    if address is not None and address != request.remote:
        request = request.clone(remote=address)
    return await handler(request)


def certificate_to_upload(config: Config, served: CertificateInfo | None) -> bytes | None:
    """The PEM `setWebhook` uploads, per `[telegram] upload_certificate`; None for none.

    "auto": the gateway's own certificate when self-signed (a CA-issued one, or a proxy's, is
    trusted by Telegram already). "always": the configured certificate file, even with
    tls = false (a proxy serving a self-signed certificate). "never": nothing.
    """
    mode = config.telegram.upload_certificate
    if mode == "never":
        return None
    if served is not None:
        return served.pem if (mode == "always" or served.self_signed) else None
    if mode == "auto":
        return None
    return _certificate_pem(config)


def _certificate_pem(config: Config) -> bytes:
    path = config.certificate_path
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc.strerror}") from None
    except ValueError:
        raise CertificateError(f"certificate {path} is not a PEM certificate") from None
    return cert.public_bytes(serialization.Encoding.PEM)
