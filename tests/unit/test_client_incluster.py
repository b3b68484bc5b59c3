"""unistack.client.kubeconfig's in-cluster configuration, with a temp dir as the secret dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from unistack.cli import pki
from unistack.client import kubeconfig
from unistack.client.transport import TokenFile, tls_context

POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def _secret_dir(tmp_path: Path, token: str = "sa-token\n", namespace: str = "team-a") -> Path:
    """What the kubelet mounts: token, ca.crt (a real CA certificate) and namespace."""
    secret = tmp_path / "serviceaccount"
    secret.mkdir()
    files = pki.PkiFiles(
        secret / "ca.crt", tmp_path / "ca.key", tmp_path / "srv.crt", tmp_path / "srv.key"
    )
    pki.ensure_pki(files, hostname="unistack-test")
    (secret / "token").write_text(token)
    (secret / "namespace").write_text(namespace)
    return secret


def test_reads_server_token_ca_and_namespace(tmp_path: Path) -> None:
    secret = _secret_dir(tmp_path)
    context = kubeconfig.in_cluster(str(secret), POD)
    assert context.server == "https://10.96.0.1:443"
    assert context.token == "sa-token"
    assert context.ca_file == str(secret / "ca.crt")
    assert context.namespace == "team-a"
    transport = context.transport()
    assert transport.base_url == "https://10.96.0.1:443"
    loaded = tls_context(ca_file=context.ca_file).get_ca_certs()
    assert [dict(entry[0] for entry in cert["subject"])["commonName"] for cert in loaded] == [
        pki.CA_NAME
    ]


def test_ipv6_service_host_is_bracketed(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    context = kubeconfig.in_cluster(str(_secret_dir(tmp_path)), environ)
    assert context.server == "https://[fd00::1]:6443"


def test_without_namespace_or_ca_files(tmp_path: Path) -> None:
    secret = tmp_path / "sa"
    secret.mkdir()
    (secret / "token").write_text("t")
    context = kubeconfig.in_cluster(str(secret), POD)
    assert context.namespace == "default" and context.ca_file is None and context.token == "t"


@pytest.mark.parametrize(
    "environ",
    [{}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT": "443"}],
)
def test_outside_a_pod_is_not_in_cluster(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(kubeconfig.NotInCluster):
        kubeconfig.in_cluster(str(_secret_dir(tmp_path)), environ)
    assert not kubeconfig.in_cluster_environment(environ)


def test_a_missing_token_is_not_in_cluster(tmp_path: Path) -> None:
    with pytest.raises(kubeconfig.NotInCluster, match="token"):
        kubeconfig.in_cluster(str(tmp_path / "absent"), POD)


def test_load_falls_back_to_in_cluster_without_a_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = _secret_dir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    context = kubeconfig.load(secret_dir=str(secret), environ=POD)
    assert context.server == "https://10.96.0.1:443" and context.token == "sa-token"


def test_load_prefers_a_kubeconfig_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "current-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://example.test:6443'}}]\n"
        "users: [{name: u, user: {token: file-token}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    context = kubeconfig.load(secret_dir=str(_secret_dir(tmp_path)), environ=POD)
    assert context.server == "https://example.test:6443" and context.token == "file-token"


def test_load_outside_a_pod_without_a_kubeconfig_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(FileNotFoundError):
        kubeconfig.load(secret_dir=str(_secret_dir(tmp_path)), environ={})


def test_a_token_file_is_read_again_once_its_period_has_passed(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [100.0]
    token = TokenFile(str(path), period=60, clock=lambda: now[0])
    assert token.current() == "first"
    path.write_text("second\n")
    now[0] += 59
    assert token.current() == "first"  # within the period: the one read
    now[0] += 1
    assert token.current() == "second"
    path.unlink()  # the agent is between writes: the last token stands
    now[0] += 60
    assert token.current() == "second"


async def test_requests_carry_the_rotated_token(tmp_path: Path) -> None:
    """Through the transport a kubeconfig with `tokenFile` makes, to a real HTTP server."""
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/version", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    (tmp_path / "token").write_text("first")
    config = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
    }
    context = kubeconfig.parse(config, str(tmp_path))
    assert context.token_file == str(tmp_path / "token")
    transport = context.transport()
    try:
        await transport.request("GET", "/version")
        (tmp_path / "token").write_text("second")
        assert isinstance(transport._token, TokenFile)
        transport._token.period = 0  # the minute has passed
        await transport.request("GET", "/version")
        async with transport.stream("GET", "/version") as answer:
            assert answer.status == 200
    finally:
        await transport.close()
        await runner.cleanup()
    assert seen == ["Bearer first", "Bearer second", "Bearer second"]
