"""unistack.cli.pki: the CA and serving certificate that `unistack up` generates."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from unistack.cli import pki


@pytest.fixture
def files(tmp_path: Path) -> pki.PkiFiles:
    return pki.PkiFiles(
        tmp_path / "ca.crt",
        tmp_path / "ca.key",
        tmp_path / "apiserver.crt",
        tmp_path / "apiserver.key",
    )


def _handshake(files: pki.PkiFiles, server_hostname: str) -> None:
    """A TLS handshake in memory: a client trusting only the CA against the serving pair."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.serving_cert, files.serving_key)
    client_ctx = ssl.create_default_context(cadata=files.ca_cert.read_text())
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_serving_certificate_verifies_against_the_ca_for_127_0_0_1(files: pki.PkiFiles) -> None:
    assert pki.ensure_pki(files, hostname="testhost") is True
    ca = pki.load_certificate(files.ca_cert)
    serving = pki.load_certificate(files.serving_cert)
    serving.verify_directly_issued_by(ca)
    _handshake(files, "127.0.0.1")
    _handshake(files, "localhost")


def test_serving_certificate_names_loopback_localhost_host_and_the_service(
    files: pki.PkiFiles,
) -> None:
    pki.ensure_pki(files, hostname="testhost")
    sans = pki.load_certificate(files.serving_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(sans.value.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.96.0.1"),  # the `kubernetes` Service, as pods reach it
    }
    assert set(sans.value.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "testhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }


def test_the_service_account_key_is_made_once_and_kept(tmp_path: Path) -> None:
    key = tmp_path / "pki" / "sa.key"
    pki.ensure_signing_key(key)
    first = key.read_bytes()
    assert b"BEGIN PRIVATE KEY" in first and key.stat().st_mode & 0o777 == 0o600
    pki.ensure_signing_key(key)
    assert key.read_bytes() == first


def test_ca_is_a_ten_year_ca(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    ca = pki.load_certificate(files.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650


def test_private_keys_are_owner_only(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    for key in (files.ca_key, files.serving_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_second_call_reuses_valid_files(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    before = {path: path.read_bytes() for path in vars(files).values()}
    assert pki.ensure_pki(files, hostname="testhost") is False
    assert {path: path.read_bytes() for path in vars(files).values()} == before


def test_new_host_name_reissues_only_the_serving_certificate(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    ca_before, serving_before = files.ca_cert.read_bytes(), files.serving_cert.read_bytes()
    assert pki.ensure_pki(files, hostname="otherhost") is True
    assert files.ca_cert.read_bytes() == ca_before
    assert files.serving_cert.read_bytes() != serving_before
    _handshake(files, "127.0.0.1")


def test_mismatched_or_missing_files_are_regenerated(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    files.serving_key.write_bytes(files.ca_key.read_bytes())
    files.ca_cert.unlink()
    assert pki.ensure_pki(files, hostname="testhost") is True
    _handshake(files, "127.0.0.1")


def test_other_names_are_rejected(files: pki.PkiFiles) -> None:
    pki.ensure_pki(files, hostname="testhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, "example.com")
