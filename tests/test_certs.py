"""Certificate generation, loading, host matching, TLS contexts and the gen-cert command."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import ssl
import stat
import subprocess
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.certs import (
    CertificateInfo,
    add_gen_cert_arguments,
    certificate_matches_host,
    check_key_permissions,
    client_ssl_context,
    gen_cert_main,
    generate_certificate,
    load_certificate_pair,
    run_gen_cert,
    server_ssl_context,
    write_certificate,
)
from gateway.constants import CERTIFICATE_FILENAME, DEFAULT_CERT_DAYS, PRIVATE_KEY_FILENAME
from gateway.errors import CertificateError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Pair:
    cert_path: Path
    key_path: Path
    info: CertificateInfo


@pytest.fixture(scope="module")
def make_pair(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Pair]:
    """Write and load a generated pair per host, once per module (RSA generation is slow)."""
    cache: dict[str, Pair] = {}

    def make(host: str) -> Pair:
        if host not in cache:
            out = tmp_path_factory.mktemp("certs")
            cert_path, key_path = write_certificate(out, host, 30)
            cache[host] = Pair(cert_path, key_path, load_certificate_pair(cert_path, key_path))
        return cache[host]

    return make


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _custom_pair(
    directory: Path,
    key: rsa.RSAPrivateKey,
    *,
    cn: str,
    san: list[x509.GeneralName] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_key: rsa.RSAPrivateKey | None = None,
) -> tuple[Path, Path]:
    """A certificate built by hand: past dates, CN only, or signed by another key."""
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = (
        subject
        if issuer_key is None
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some CA")])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def _single_line(exc: pytest.ExceptionInfo[CertificateError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert "BEGIN" not in message  # no PEM material
    return message


# --- generate_certificate -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "san_type", "expected"),
    [
        ("gateway.example.com", x509.DNSName, "gateway.example.com"),
        ("203.0.113.7", x509.IPAddress, ipaddress.ip_address("203.0.113.7")),
        ("2001:db8::1", x509.IPAddress, ipaddress.ip_address("2001:db8::1")),
    ],
)
def test_generate_certificate_fields(host: str, san_type: type, expected: object) -> None:
    cert_pem, key_pem = generate_certificate(host, days=10)
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)

    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(san) == 1
    assert san.get_values_for_type(san_type) == [expected]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    now = datetime.now(UTC)
    assert now - timedelta(minutes=2) < cert.not_valid_before_utc < now
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=10) <= lifetime <= timedelta(days=10, minutes=2)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_generate_certificate_default_days_and_unique_serials() -> None:
    first = x509.load_pem_x509_certificate(generate_certificate("a.example")[0])
    second = x509.load_pem_x509_certificate(generate_certificate("a.example")[0])
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    assert lifetime.days == DEFAULT_CERT_DAYS
    assert first.serial_number != second.serial_number


@pytest.mark.parametrize(
    "host",
    [
        "",
        "gate way.example",
        "https://gateway.example",
        "gateway.example/x",
        "gateway.example:8443",
        "[::1]",
        "1.2.3",
        "-bad.example",
        "a..b",
        "ünicode.example",
        "x" * 65 + ".example",
    ],
)
def test_generate_certificate_rejects_bad_host(host: str) -> None:
    with pytest.raises(CertificateError, match="invalid host") as exc:
        generate_certificate(host)
    _single_line(exc)


def test_generate_certificate_rejects_bad_days() -> None:
    with pytest.raises(CertificateError, match="0 days"):
        generate_certificate("gateway.example", days=0)


# --- write_certificate --------------------------------------------------------------------------


def test_write_certificate_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "certs"
    cert_path, key_path = write_certificate(out, "gateway.example", 5)

    assert (cert_path, key_path) == (out / CERTIFICATE_FILENAME, out / PRIVATE_KEY_FILENAME)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert list(out.iterdir()) and len(list(out.iterdir())) == 2


@pytest.mark.parametrize("existing", [CERTIFICATE_FILENAME, PRIVATE_KEY_FILENAME])
def test_write_certificate_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"keep me")
    with pytest.raises(CertificateError, match="--force") as exc:
        write_certificate(tmp_path, "gateway.example", 5)
    assert str(tmp_path / existing) in _single_line(exc)
    assert (tmp_path / existing).read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_write_certificate_force_replaces_and_tightens_key(tmp_path: Path) -> None:
    key_path = tmp_path / PRIVATE_KEY_FILENAME
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)
    (tmp_path / CERTIFICATE_FILENAME).write_bytes(b"old")

    cert_path, key_path = write_certificate(tmp_path, "gateway.example", 5, force=True)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert load_certificate_pair(cert_path, key_path).hosts == ("gateway.example",)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        CERTIFICATE_FILENAME,
        PRIVATE_KEY_FILENAME,
    ]


# --- load_certificate_pair ----------------------------------------------------------------------


def test_load_certificate_pair(make_pair: Callable[[str], Pair]) -> None:
    pair = make_pair("gateway.example")
    info = pair.info
    cert = x509.load_pem_x509_certificate(pair.cert_path.read_bytes())

    assert (info.cert_path, info.key_path) == (pair.cert_path, pair.key_path)
    assert info.pem == pair.cert_path.read_bytes()
    assert info.self_signed
    assert info.hosts == ("gateway.example",)
    assert info.not_after == cert.not_valid_after_utc
    assert info.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex(":").upper()


def test_load_ip_certificate_hosts(make_pair: Callable[[str], Pair]) -> None:
    info = make_pair("127.0.0.1").info
    assert info.hosts == ("127.0.0.1",)
    assert info.ip_addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert info.dns_names == ()


def test_load_reports_not_self_signed(tmp_path: Path, other_key: rsa.RSAPrivateKey) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_path, key_path = _custom_pair(tmp_path, key, cn="gateway.example", issuer_key=other_key)
    assert not load_certificate_pair(cert_path, key_path).self_signed


def test_load_pem_excludes_other_file_content(
    make_pair: Callable[[str], Pair], tmp_path: Path
) -> None:
    pair = make_pair("gateway.example")
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pair.cert_path.read_bytes() + pair.key_path.read_bytes())
    info = load_certificate_pair(combined, pair.key_path)
    assert b"PRIVATE KEY" not in info.pem  # safe to upload to Telegram


def _encrypted_key(pair: Pair) -> bytes:
    key = serialization.load_pem_private_key(pair.key_path.read_bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("case", "at_fault", "expected"),
    [
        ("missing cert", "cert", "does not exist"),
        ("missing key", "key", "does not exist"),
        ("garbage cert", "cert", "not a PEM certificate"),
        ("swapped", "cert", "swapped"),
        ("garbage key", "key", "not a PEM private key"),
        ("encrypted key", "key", "encrypted"),
        ("mismatched key", "key", "does not belong"),
        ("key is a directory", "key", "is a directory"),
    ],
)
def test_load_errors(
    make_pair: Callable[[str], Pair], tmp_path: Path, case: str, at_fault: str, expected: str
) -> None:
    good = make_pair("gateway.example")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(good.cert_path, cert_path)
    shutil.copy(good.key_path, key_path)
    if case == "missing cert":
        cert_path.unlink()
    elif case == "missing key":
        key_path.unlink()
    elif case == "garbage cert":
        cert_path.write_bytes(b"hello, not a certificate\n")
    elif case == "swapped":
        cert_path, key_path = key_path, cert_path
    elif case == "garbage key":
        # A PEM header around garbage, not a key (spelled in two parts so no scanner for
        # committed private keys mistakes this line for one).
        marker = b"PRIVATE" + b" KEY"
        key_path.write_bytes(
            b"-----BEGIN " + marker + b"-----\nAAAA\n-----END " + marker + b"-----\n"
        )
    elif case == "encrypted key":
        key_path.write_bytes(_encrypted_key(good))
    elif case == "mismatched key":
        shutil.copy(make_pair("other.example").key_path, key_path)
    elif case == "key is a directory":
        key_path.unlink()
        key_path.mkdir()

    with pytest.raises(CertificateError, match=expected) as exc:
        load_certificate_pair(cert_path, key_path)
    message = _single_line(exc)
    assert str(cert_path if at_fault == "cert" else key_path) in message


def test_load_expired_certificate(tmp_path: Path, other_key: rsa.RSAPrivateKey) -> None:
    expired_on = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
    cert_path, key_path = _custom_pair(
        tmp_path,
        other_key,
        cn="gateway.example",
        not_before=datetime(2019, 3, 1, tzinfo=UTC),
        not_after=expired_on,
    )
    with pytest.raises(CertificateError, match="expired on 2020-03-01 12:00:00 UTC") as exc:
        load_certificate_pair(cert_path, key_path)
    assert str(cert_path) in _single_line(exc)


def test_load_expired_at_given_time(make_pair: Callable[[str], Pair]) -> None:
    pair = make_pair("gateway.example")
    later = datetime.now(UTC) + timedelta(days=31)
    with pytest.raises(CertificateError, match="expired on"):
        load_certificate_pair(pair.cert_path, pair.key_path, now=later)


def test_load_not_yet_valid(make_pair: Callable[[str], Pair]) -> None:
    pair = make_pair("gateway.example")
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(CertificateError, match=r"not valid before .*system clock") as exc:
        load_certificate_pair(pair.cert_path, pair.key_path, now=earlier)
    assert str(pair.cert_path) in _single_line(exc)


# --- check_key_permissions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "flagged"),
    [(0o600, False), (0o400, False), (0o640, True), (0o644, True), (0o604, True)],
)
def test_check_key_permissions(tmp_path: Path, mode: int, flagged: bool) -> None:
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(b"x")
    key_path.chmod(mode)
    problem = check_key_permissions(key_path)
    if flagged:
        assert problem is not None
        assert str(key_path) in problem and f"{mode:04o}" in problem
    else:
        assert problem is None


def test_check_key_permissions_missing(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="does not exist"):
        check_key_permissions(tmp_path / "nope.pem")


# --- certificate_matches_host -------------------------------------------------------------------


def test_matches_dns_host(make_pair: Callable[[str], Pair]) -> None:
    info = make_pair("gateway.example").info
    assert certificate_matches_host(info, "gateway.example")
    assert certificate_matches_host(info, "GateWay.Example")
    assert not certificate_matches_host(info, "www.gateway.example")
    assert not certificate_matches_host(info, "203.0.113.7")


def test_matches_ip_host(make_pair: Callable[[str], Pair]) -> None:
    info = make_pair("127.0.0.1").info
    assert certificate_matches_host(info, "127.0.0.1")
    assert not certificate_matches_host(info, "127.0.0.2")
    assert not certificate_matches_host(info, "localhost")


def test_matches_wildcard(make_pair: Callable[[str], Pair]) -> None:
    info = make_pair("*.gateway.example").info
    assert certificate_matches_host(info, "bot.gateway.example")
    assert certificate_matches_host(info, "BOT.Gateway.example")
    assert not certificate_matches_host(info, "gateway.example")
    assert not certificate_matches_host(info, "a.bot.gateway.example")


def test_matches_cn_only_when_no_san(tmp_path: Path, other_key: rsa.RSAPrivateKey) -> None:
    # Telegram's own openssl recipe produces a CN-only certificate.
    info = load_certificate_pair(*_custom_pair(tmp_path / "a", other_key, cn="203.0.113.7"))
    assert certificate_matches_host(info, "203.0.113.7")
    assert not certificate_matches_host(info, "203.0.113.8")
    with_san = load_certificate_pair(
        *_custom_pair(
            tmp_path / "b", other_key, cn="203.0.113.7", san=[x509.DNSName("gateway.example")]
        )
    )
    assert with_san.hosts == ("gateway.example", "203.0.113.7")
    assert not certificate_matches_host(with_san, "203.0.113.7")


# --- TLS ----------------------------------------------------------------------------------------


async def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_hostname: str
) -> tuple[str, str, bytes]:
    """Connect to a real TLS server on 127.0.0.1; return (version, cipher, echoed line)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            writer.write(await reader.readline())
            await writer.drain()
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname=server_hostname
            ),
            timeout=10,
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            version, cipher = ssl_object.version(), ssl_object.cipher()[0]
            writer.write(b"ping\n")
            echoed = await reader.readline()
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return version, cipher, echoed


@pytest.mark.parametrize("host", ["127.0.0.1", "gateway.test"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls_handshake(
    make_pair: Callable[[str], Pair], host: str, version: ssl.TLSVersion
) -> None:
    info = make_pair(host).info
    client = client_ssl_context(info.pem)
    client.minimum_version = client.maximum_version = version

    negotiated, cipher, echoed = await _handshake(server_ssl_context(info), client, host)

    assert (
        negotiated
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )
    assert echoed == b"ping\n"
    if version is ssl.TLSVersion.TLSv1_2:
        assert cipher.startswith("ECDHE-RSA-") and ("GCM" in cipher or "CHACHA20" in cipher)


async def test_tls_handshake_with_python_default_client(make_pair: Callable[[str], Pair]) -> None:
    # What an ordinary Python client does when told to trust the uploaded certificate.
    info = make_pair("gateway.test").info
    client = ssl.create_default_context(cadata=info.pem.decode())
    _, _, echoed = await _handshake(server_ssl_context(info), client, "gateway.test")
    assert echoed == b"ping\n"


@pytest.mark.parametrize("client_ciphers", [None, "DEFAULT:@SECLEVEL=0"])
async def test_tls_1_1_is_refused(
    make_pair: Callable[[str], Pair], client_ciphers: str | None
) -> None:
    # With OpenSSL 3's default security level the client cannot even offer TLS 1.1 ("no ciphers
    # available"), so the first case fails on the client side. Lowering the client's level to 0
    # makes it send a TLS 1.1 ClientHello, which our server (minimum TLS 1.2) then rejects.
    info = make_pair("127.0.0.1").info
    client = client_ssl_context(info.pem)
    if client_ciphers is not None:
        client.set_ciphers(client_ciphers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python deprecates TLS 1.0/1.1
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await _handshake(server_ssl_context(info), client, "127.0.0.1")


async def test_tls_weak_cipher_is_refused(make_pair: Callable[[str], Pair]) -> None:
    info = make_pair("127.0.0.1").info
    client = client_ssl_context(info.pem)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("AES128-SHA:AES256-GCM-SHA384")  # no forward secrecy
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await _handshake(server_ssl_context(info), client, "127.0.0.1")


@pytest.mark.parametrize(
    ("host", "wrong"),
    [("127.0.0.1", "other.test"), ("gateway.test", "other.test"), ("gateway.test", "127.0.0.1")],
)
async def test_tls_hostname_mismatch(
    make_pair: Callable[[str], Pair], host: str, wrong: str
) -> None:
    info = make_pair(host).info
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await _handshake(server_ssl_context(info), client_ssl_context(info.pem), wrong)


async def test_tls_untrusted_certificate(make_pair: Callable[[str], Pair]) -> None:
    server_info = make_pair("gateway.test").info
    other = make_pair("other.example").info
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(
            server_ssl_context(server_info), client_ssl_context(other.pem), "gateway.test"
        )


def test_server_context_options(make_pair: Callable[[str], Pair]) -> None:
    context = server_ssl_context(make_pair("gateway.example").info)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all(name.startswith("ECDHE-") for name in tls12)
    assert all("GCM" in name or "CHACHA20" in name for name in tls12)


def test_client_context_rejects_garbage() -> None:
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        client_ssl_context(b"not a certificate")


# --- gen-cert -----------------------------------------------------------------------------------


def test_gen_cert_main_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert gen_cert_main(["--host", "203.0.113.7", "--days", "90", "--out", str(out)]) == 0

    stdout = capsys.readouterr().out
    info = load_certificate_pair(out / CERTIFICATE_FILENAME, out / PRIVATE_KEY_FILENAME)
    assert str(out / CERTIFICATE_FILENAME) in stdout
    assert str(out / PRIVATE_KEY_FILENAME) in stdout
    assert info.fingerprint_sha256 in stdout
    assert info.not_after.strftime("%Y-%m-%d") in stdout
    assert info.hosts == ("203.0.113.7",)
    assert (info.not_after - info.not_before).days == 90


def test_gen_cert_main_refuses_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--host", "gateway.example", "--out", str(tmp_path)]
    assert gen_cert_main(args) == 0
    before = (tmp_path / PRIVATE_KEY_FILENAME).read_bytes()
    capsys.readouterr()

    assert gen_cert_main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "--force" in lines[0]
    assert (tmp_path / PRIVATE_KEY_FILENAME).read_bytes() == before

    assert gen_cert_main([*args, "--force"]) == 0
    assert (tmp_path / PRIVATE_KEY_FILENAME).read_bytes() != before


def test_gen_cert_main_bad_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_cert_main(["--host", "https://x.example/", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: invalid host")
    assert list(tmp_path.iterdir()) == []


def test_gen_cert_as_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_gen_cert_arguments(sub.add_parser("gen-cert"))
    args = parser.parse_args(["gen-cert", "--host", "gateway.example", "--out", str(tmp_path)])
    assert args.days == DEFAULT_CERT_DAYS
    assert run_gen_cert(args) == 0
    assert (tmp_path / CERTIFICATE_FILENAME).exists()


def test_gen_cert_rejects_bad_days(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        gen_cert_main(["--host", "gateway.example", "--days", "0"])
    assert exc.value.code == 2
    assert "days" in capsys.readouterr().err


def test_gen_cert_script_is_executable_bash() -> None:
    script = REPO_ROOT / "scripts" / "gen_cert.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "set -euo pipefail" in script.read_text()
