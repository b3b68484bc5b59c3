"""unistack.cli.kubeconfig: the admin token and the kubeconfig `unistack up` writes."""

from __future__ import annotations

import base64
import csv
import dataclasses
import stat
from pathlib import Path

import yaml
from kubernetes import client, config

from unistack.cli import kubeconfig, serve, up
from unistack.cli.hostoptions import HostOptions
from unistack.cli.statedir import StateDir
from unistack.client import kubeconfig as client_kubeconfig


def _prepared(tmp_path: Path, port: int = 6443) -> StateDir:
    state = StateDir.at(tmp_path / "state")
    up.prepare(state, port, "fake")
    return state


def test_kubeconfig_is_yaml_with_one_current_context(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    document = yaml.safe_load(state.kubeconfig.read_text())
    assert document["current-context"] == "unistack"
    assert document["contexts"] == [
        {"name": "unistack", "context": {"cluster": "unistack", "user": "admin"}}
    ]
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == state.ca_cert.read_bytes()
    assert stat.S_IMODE(state.kubeconfig.stat().st_mode) == 0o600


def test_token_matches_the_admin_line_of_tokens_csv(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    token = yaml.safe_load(state.kubeconfig.read_text())["users"][0]["user"]["token"]
    rows = list(csv.reader(state.tokens.read_text().splitlines()))
    assert len(rows) == 7  # the admin, the node the agent is, and the supervised parts
    assert rows[0][0] == token
    assert rows[0][1] == "admin"
    assert rows[0][3] == "system:masters"
    assert stat.S_IMODE(state.tokens.stat().st_mode) == 0o600


def test_each_hosts_agent_gets_its_nodes_own_token(tmp_path: Path) -> None:
    state = StateDir.at(tmp_path / "state")
    options = HostOptions(driver="fake", node_name="n1", hosts=3, hosts_cidr="10.254.9.0/24")
    up.prepare(state, 6443, "fake", options)
    users = {e.user: e for e in kubeconfig.parse_tokens(state.tokens.read_text())}
    servers = []
    for index, name in enumerate(("n1", "n1-2", "n1-3"), start=1):
        entry = users[f"system:node:{name}"]
        assert entry.groups == ("system:nodes",)
        access = kubeconfig.load_access(serve.node_kubeconfig(state, index))
        assert access.token == entry.token
        servers.append(access.server)
    assert servers == ["https://127.0.0.1:6443", *["https://10.254.9.1:6443"] * 2]
    before = state.tokens.read_text()
    up.prepare(state, 6443, "fake", options)
    assert state.tokens.read_text() == before  # kept across `up`s
    # `up --hosts 2` after 3: the third host's credential goes
    up.prepare(state, 6443, "fake", dataclasses.replace(options, hosts=2))
    users = [e.user for e in kubeconfig.parse_tokens(state.tokens.read_text())]
    nodes = [user for user in users if user.startswith("system:node:")]
    assert nodes == ["system:node:n1", "system:node:n1-2"] and users[0] == "admin"
    assert not serve.node_kubeconfig(state, 3).exists()
    assert serve.node_kubeconfig(state, 2).exists()


def test_token_is_generated_once(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    first = state.tokens.read_text()
    up.prepare(state, 7443, "fake")
    assert state.tokens.read_text() == first
    assert kubeconfig.load_access(state.kubeconfig).server == "https://127.0.0.1:7443"


def test_other_token_lines_are_kept(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('abc,alice,1,"dev,ops"')
    admin = kubeconfig.ensure_admin_token(tokens)
    entries = kubeconfig.parse_tokens(tokens.read_text())
    assert [e.user for e in entries] == ["alice", "admin"]
    assert entries[0].groups == ("dev", "ops")
    assert entries[1].token == admin


def test_load_access_round_trips(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    access = kubeconfig.load_access(state.kubeconfig)
    assert access.ca_pem == state.ca_cert.read_bytes()
    assert access.token == kubeconfig.parse_tokens(state.tokens.read_text())[0].token


def test_kubernetes_client_accepts_it(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(state.kubeconfig), client_configuration=configuration)
    access = kubeconfig.load_access(state.kubeconfig)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.get_api_key_with_prefix("BearerToken") == f"Bearer {access.token}"
    assert configuration.ssl_ca_cert is not None
    assert Path(configuration.ssl_ca_cert).read_bytes() == state.ca_cert.read_bytes()
    assert configuration.verify_ssl


def test_the_kubeconfigs_certificate_authority_is_the_state_directorys_ca(
    tmp_path: Path,
) -> None:
    """What the controllers publish as `kube-root-ca.crt`: the CA of the API's certificate."""
    state = _prepared(tmp_path)
    context = client_kubeconfig.load(str(state.kubeconfig))
    assert context.certificate_authority() == state.ca_cert.read_text()


def test_a_certificate_authority_file_is_read_and_plain_http_has_none(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    on_file = client_kubeconfig.KubeconfigContext(
        "https://127.0.0.1:6443", "default", ca_file=str(state.ca_cert)
    )
    assert on_file.certificate_authority() == state.ca_cert.read_text()
    plain = client_kubeconfig.KubeconfigContext(
        "http://127.0.0.1:8001", "default", ca_file=str(state.ca_cert)
    )
    assert plain.certificate_authority() is None
    trusting_the_system = client_kubeconfig.KubeconfigContext("https://x:6443", "default")
    assert trusting_the_system.certificate_authority() is None


def test_each_supervised_process_gets_a_token_of_its_own_not_the_admins(tmp_path: Path) -> None:
    state = _prepared(tmp_path)
    users = {e.user: e for e in kubeconfig.parse_tokens(state.tokens.read_text())}
    admin = kubeconfig.load_access(state.kubeconfig)
    seen = set()
    for part in ("controllers", "openstack", "dns", "gateway", "registry"):
        entry = users[f"system:unistack:{part}"]
        assert entry.groups == ("system:unistack:supervised",)
        config = serve.supervised_kubeconfig(state, part)
        access = kubeconfig.load_access(config)
        assert access.token == entry.token and access.token != admin.token
        assert access.server == admin.server and access.ca_pem == admin.ca_pem
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        seen.add(access.token)
    assert len(seen) == 5
    before = state.tokens.read_text()
    up.prepare(state, 6443, "fake")
    assert state.tokens.read_text() == before  # kept across `up`s
