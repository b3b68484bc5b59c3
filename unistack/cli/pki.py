"""TLS for the API server: a private CA and a serving certificate signed by it.

`ensure_pki` writes `DIR/pki/ca.{crt,key}` (EC P-256, 10 years) and
`DIR/pki/apiserver.{crt,key}` (EC P-256, 1 year, SANs 127.0.0.1, ::1, localhost, the host
name and the `kubernetes` Service's names and address), or keeps the existing files when they
are still valid: same key pair, signed by the CA, the right SANs, not about to expire.
`ensure_signing_key` writes `DIR/pki/sa.key`, the key that signs service-account tokens. Keys
are written with mode 0600. `kubeconfig` embeds the CA certificate; `serve` hands the serving
pair to the API server.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from unistack.cli.statedir import write_private

CA_LIFETIME = datetime.timedelta(days=3650)
SERVING_LIFETIME = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(minutes=5)
CA_NAME = "unistack-ca"
SERVING_NAME = "unistack-apiserver"
# How pods reach the API server, as kube-apiserver's certificate names it: the `kubernetes`
# Service in `default` and its cluster IP (the first of the default service range).
IN_CLUSTER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
KUBERNETES_SERVICE_IP = "10.96.0.1"


@dataclass(frozen=True)
class PkiFiles:
    """Where the four PEM files live."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def serving_names(
    hostname: str | None = None, addresses: tuple[str, ...] = ()
) -> list[x509.GeneralName]:
    """The SANs of the serving certificate: loopback addresses, localhost, the host name,
    the names and address pods reach it by (the `kubernetes` Service), and any other address
    the API server is reached at (the hosts' underlay)."""
    dns = ["localhost", *IN_CLUSTER_NAMES]
    host = hostname if hostname is not None else socket.gethostname()
    if host and host not in dns:
        dns.append(host)
    loopback = ("127.0.0.1", "::1", KUBERNETES_SERVICE_IP)
    ips = [ipaddress.ip_address(a) for a in (*loopback, *addresses)]
    return [*(x509.DNSName(name) for name in dns), *(x509.IPAddress(ip) for ip in ips)]


def ensure_pki(
    files: PkiFiles, hostname: str | None = None, addresses: tuple[str, ...] = ()
) -> bool:
    """Create or reuse the CA and serving certificate. Returns True if anything was written."""
    now = _now()
    ca = _load_valid_ca(files, now)
    wrote = ca is None
    if ca is None:
        ca = _issue_ca(now)
        _store(ca, files.ca_cert, files.ca_key)
    names = serving_names(hostname, addresses)
    if wrote or not _serving_is_valid(files, ca, names, now):
        _store(_issue_serving(ca, names, now), files.serving_cert, files.serving_key)
        wrote = True
    return wrote


def ensure_signing_key(path: Path) -> None:
    """The service-account signing key (EC P-256, PEM, mode 0600), made unless there."""
    if path.exists():
        return
    pem = _new_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, pem)


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unistack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures always (EC keys sign the TLS handshake); certificate and CRL
    signing only for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _issue_ca(now: datetime.datetime) -> KeyPair:
    key = _new_key()
    usage = _key_usage(signs_certificates=True)
    cert = (
        _builder(_name(CA_NAME), _name(CA_NAME), key, now, CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _issue_serving(ca: KeyPair, names: list[x509.GeneralName], now: datetime.datetime) -> KeyPair:
    key = _new_key()
    usage = _key_usage(signs_certificates=False)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    cert = (
        _builder(_name(SERVING_NAME), ca.cert.subject, key, now, SERVING_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    lifetime: datetime.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
    )


def _store(pair: KeyPair, cert_path: Path, key_path: Path) -> None:
    key_pem = pair.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_path, key_pem, 0o600)
    write_private(cert_path, pair.cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_pair(cert_path: Path, key_path: Path) -> KeyPair | None:
    """The pair on disk, or None if either file is missing, unreadable or they do not match."""
    try:
        cert = load_certificate(cert_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return KeyPair(cert, key)


def _fresh(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _load_valid_ca(files: PkiFiles, now: datetime.datetime) -> KeyPair | None:
    pair = _load_pair(files.ca_cert, files.ca_key)
    if pair is None or not _fresh(pair.cert, now):
        return None
    try:
        constraints = pair.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return None
    return pair if constraints.value.ca else None


def _serving_is_valid(
    files: PkiFiles, ca: KeyPair, names: list[x509.GeneralName], now: datetime.datetime
) -> bool:
    pair = _load_pair(files.serving_cert, files.serving_key)
    if pair is None or not _fresh(pair.cert, now):
        return False
    try:
        pair.cert.verify_directly_issued_by(ca.cert)
        sans = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    return set(names) <= set(sans.value)
