"""The webhook's self-signed certificate: generate it, load and check it, build TLS contexts.

Telegram is told about the certificate when the webhook is registered, so a self-signed leaf is
its own trust root. Every failure a user can cause raises :class:`CertificateError` with one line
naming the file at fault; key material never appears in a message.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import ssl
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.certargs import add_gen_cert_arguments
from gateway.constants import (
    CERTIFICATE_FILENAME,
    DEFAULT_CERT_DAYS,
    MAX_CERT_DAYS,
    PRIVATE_KEY_FILENAME,
)
from gateway.errors import CertificateError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RSA_KEY_SIZE = 2048
#: TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites keep OpenSSL's defaults.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A certificate and private key that were loaded and checked to belong together."""

    cert_path: Path
    key_path: Path
    #: The certificate alone, re-encoded as PEM: safe to upload even if the file holds more.
    pem: bytes
    #: Issuer equals subject and the signature verifies with the certificate's own key.
    self_signed: bool
    not_before: datetime
    not_after: datetime
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    #: SAN DNS names and IP addresses as strings, then the CN if not already among them.
    hosts: tuple[str, ...]
    #: SHA-256 of the DER certificate, upper-case hex pairs joined by colons.
    fingerprint_sha256: str


# --- Generation ---------------------------------------------------------------------------------


def _parse_host(host: str) -> IPAddress | str:
    """Return the host as an IP address, or as a validated DNS name."""
    if not host:
        raise CertificateError("invalid host: it is empty; give a DNS name or an IP address")
    if any(ch.isspace() for ch in host):
        raise CertificateError(f"invalid host {host!r}: it contains whitespace")
    if "/" in host or "\\" in host:
        raise CertificateError(f"invalid host {host!r}: give only the host name, not a URL or path")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host or "[" in host:
        raise CertificateError(
            f"invalid host {host!r}: give a DNS name or an IP address without port or brackets"
        )
    labels = host.split(".")
    if len(host) > 253 or not all(
        _LABEL.fullmatch(label) or (i == 0 and label == "*") for i, label in enumerate(labels)
    ):
        raise CertificateError(
            f"invalid host {host!r}: not a valid DNS name (ASCII letters, digits and hyphens, "
            "dot-separated labels of at most 63 characters)"
        )
    if labels[-1].isdigit():
        raise CertificateError(f"invalid host {host!r}: looks like an incomplete IP address")
    return host.lower()


def generate_certificate(host: str, days: int = DEFAULT_CERT_DAYS) -> tuple[bytes, bytes]:
    """Generate a self-signed certificate for ``host``, valid for ``days`` from now.

    ``host`` is a DNS name (a leading ``*.`` wildcard is allowed) or an IP address; it becomes the
    subject CN and the only subjectAltName. Returns ``(certificate PEM, private key PEM)``, the
    key unencrypted PKCS#8. Raises :class:`CertificateError` for an invalid host or day count.
    """
    parsed = _parse_host(host)
    if not 1 <= days <= MAX_CERT_DAYS:
        raise CertificateError(f"invalid validity of {days} days: use 1 to {MAX_CERT_DAYS}")
    name_text = str(parsed)
    if len(name_text) > 64:
        raise CertificateError(
            f"invalid host {host!r}: longer than the 64 characters a certificate CN allows"
        )
    san: x509.GeneralName = (
        x509.DNSName(parsed) if isinstance(parsed, str) else x509.IPAddress(parsed)
    )

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    public_key = key.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name_text)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        # CA=true lets the leaf serve as its own trust anchor (Telegram, Python's ssl cadata).
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Key identifiers keep strict verifiers (VERIFY_X509_STRICT, Python 3.13's default) happy.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def _write_new(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write ``data`` to ``path`` through a descriptor that has ``mode`` before any byte lands.

    Without ``replace`` the file must not exist (O_EXCL). With it, a temporary file in the same
    directory is renamed over the old one, so a previous world-readable key is never reused.
    """
    if replace:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        tmp_name = None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exact mode whatever the umask; file still empty
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if tmp_name is not None:
            os.replace(tmp_name, path)
    except BaseException:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise


def write_certificate(
    out_dir: Path, host: str, days: int, force: bool = False
) -> tuple[Path, Path]:
    """Generate a pair for ``host`` and write it into ``out_dir``; return (cert path, key path).

    The certificate is written with mode 0644, the key with 0600 from its creation. An existing
    file is only replaced with ``force``. ``out_dir`` is created (0700) when missing.
    """
    cert_path = out_dir / CERTIFICATE_FILENAME
    key_path = out_dir / PRIVATE_KEY_FILENAME
    if not force:
        for path in (cert_path, key_path):
            if path.exists() or path.is_symlink():
                raise CertificateError(f"{path} already exists; pass --force to overwrite it")
    cert_pem, key_pem = generate_certificate(host, days)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateError(f"cannot create directory {out_dir}: {exc.strerror}") from None
    for path, data, mode in ((key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)):
        try:
            _write_new(path, data, mode, replace=force)
        except FileExistsError:
            raise CertificateError(f"{path} already exists; pass --force to overwrite it") from None
        except OSError as exc:
            raise CertificateError(f"cannot write {path}: {exc.strerror}") from None
    return cert_path, key_path


# --- Loading and checking -----------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise CertificateError(f"{what} {path} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise CertificateError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise CertificateError(f"cannot read {what} {path}: {exc.strerror}") from None


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _names(cert: x509.Certificate, path: Path) -> tuple[str | None, list[str], list[IPAddress]]:
    try:
        cn_attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            dns_names: list[str] = []
            ips: list[IPAddress] = []
        else:
            dns_names = san.get_values_for_type(x509.DNSName)
            ips = [
                ip
                for ip in san.get_values_for_type(x509.IPAddress)
                if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
            ]
    except ValueError:
        raise CertificateError(f"certificate {path} has malformed extensions") from None
    common_name = None
    if cn_attrs:
        value = cn_attrs[0].value
        common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return common_name, dns_names, ips


def load_certificate_pair(
    cert_path: Path, key_path: Path, *, now: datetime | None = None
) -> CertificateInfo:
    """Load the certificate and its private key, and check that they can serve TLS at ``now``.

    ``now`` defaults to the current time; a naive value is taken as UTC. Raises
    :class:`CertificateError` when a file is missing or unreadable, is not a PEM certificate or
    an unencrypted private key, when the key does not match, or when the certificate is expired
    or not yet valid.
    """
    cert_data = _read(cert_path, "certificate")
    key_data = _read(key_path, "private key")

    try:
        cert = x509.load_pem_x509_certificate(cert_data)
    except ValueError:
        hint = ""
        if b"PRIVATE KEY-----" in cert_data and b"-----BEGIN CERTIFICATE-----" not in cert_data:
            hint = " (it holds a private key: are certificate and key swapped?)"
        raise CertificateError(f"certificate {cert_path} is not a PEM certificate{hint}") from None

    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise CertificateError(
            f"private key {key_path} is encrypted; the gateway needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"private key {key_path} is not a PEM private key") from None

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise CertificateError(f"private key {key_path} does not belong to certificate {cert_path}")

    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if moment > not_after:
        raise CertificateError(
            f"certificate {cert_path} expired on {_format_time(not_after)}; "
            "generate a new one with 'gateway gen-cert --force'"
        )
    if moment < not_before:
        raise CertificateError(
            f"certificate {cert_path} is not valid before {_format_time(not_before)} "
            "(check the system clock)"
        )

    common_name, dns_names, ips = _names(cert, cert_path)
    hosts = [*dns_names, *(str(ip) for ip in ips)]
    if common_name is not None and common_name not in hosts:
        hosts.append(common_name)
    return CertificateInfo(
        cert_path=cert_path,
        key_path=key_path,
        pem=cert.public_bytes(serialization.Encoding.PEM),
        self_signed=_is_self_signed(cert),
        not_before=not_before,
        not_after=not_after,
        common_name=common_name,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ips),
        hosts=tuple(hosts),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


def check_key_permissions(key_path: Path) -> str | None:
    """Return a problem description if group or others have any access to the key, else None.

    The caller decides whether that is fatal. Raises :class:`CertificateError` if the file
    cannot be examined at all.
    """
    try:
        mode = key_path.stat().st_mode
    except FileNotFoundError:
        raise CertificateError(f"private key {key_path} does not exist") from None
    except OSError as exc:
        raise CertificateError(f"cannot examine private key {key_path}: {exc.strerror}") from None
    if mode & 0o077:
        return (
            f"private key {key_path} is accessible by group or others "
            f"(mode {mode & 0o777:04o}); run: chmod 600 {key_path}"
        )
    return None


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and head != "*" and rest == pattern[2:]
    return pattern == host


def certificate_matches_host(info: CertificateInfo, host: str) -> bool:
    """Tell whether the certificate names ``host``, the way a verifying client matches it.

    An IP address is compared with the IP subjectAltNames; a DNS name with the DNS ones,
    case-insensitively, where ``*.`` stands for exactly one leftmost label. The CN is consulted
    only when the certificate has no subjectAltName of any kind (Telegram's old CN-only recipe).
    """
    try:
        ip: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if not info.dns_names and not info.ip_addresses:
        cn = info.common_name
        if cn is None:
            return False
        if ip is not None:
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(cn) == ip
            return False
        return _dns_matches(cn, host)
    if ip is not None:
        return ip in info.ip_addresses
    return any(_dns_matches(name, host) for name in info.dns_names)


# --- TLS contexts -------------------------------------------------------------------------------


def server_ssl_context(info: CertificateInfo) -> ssl.SSLContext:
    """A server context for the webhook: TLS 1.2+ with forward-secret AEAD suites only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(info.cert_path, info.key_path)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"certificate {info.cert_path} with key {info.key_path} cannot be used for TLS: "
            f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}"
        ) from None
    return context


def client_ssl_context(cert_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert_pem``, checks the host name, needs TLS 1.2+.

    It verifies as strictly as Python 3.13's defaults (``VERIFY_X509_STRICT``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        context.load_verify_locations(cadata=cert_pem.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise CertificateError("the trusted certificate is not a PEM certificate") from None
    return context


# --- Command line -------------------------------------------------------------------------------


def run_gen_cert(args: argparse.Namespace) -> int:
    """Run ``gen-cert`` with parsed arguments; return the exit code (0, or 2 on a user error)."""
    try:
        cert_path, key_path = write_certificate(args.out, args.host, args.days, force=args.force)
        info = load_certificate_pair(cert_path, key_path)
    except CertificateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"certificate: {cert_path}")
    print(f"private key: {key_path}")
    print(f"SHA-256 fingerprint: {info.fingerprint_sha256}")
    print(f"expires: {_format_time(info.not_after)}")
    if any(isinstance(ip, ipaddress.IPv6Address) for ip in info.ip_addresses):
        print("note: Telegram delivers webhooks over IPv4 only", file=sys.stderr)
    return 0


def gen_cert_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gen-cert --host HOST_OR_IP [--days N] [--out DIR] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="gateway gen-cert",
        description="Generate a self-signed certificate and private key for the webhook.",
    )
    add_gen_cert_arguments(parser)
    return run_gen_cert(parser.parse_args(argv))
