"""The supervisor's processes call the API server as users of their own (`up.prepare` writes
their tokens and kubeconfigs), each allowed what its part does and refused the rest with
kube's 403, by the policy the API server bootstraps (`accounts.bootstrap_policy`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Api
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator
from unistack.cli import kubeconfig, serve, up
from unistack.cli.statedir import StateDir
from unistack.client.transport import AsgiTransport
from unistack.controlplane import accounts
from unistack.store import SqliteStore

Obj = dict[str, Any]
SYSTEM = "/api/v1/namespaces/unistack-system"


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[dict[str, Api]]:
    """An API server with the token file `up` prepares: one client per supervised part,
    each with the token of its kubeconfig, and `admin` with the administrator's."""
    state = StateDir.at(tmp_path / "state")
    up.prepare(state, 6443, "fake")
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(
        store,
        authenticator=TokenFileAuthenticator(state.tokens),
        policy=tuple(accounts.bootstrap_policy()),
    )
    await server.start()

    def as_holder(config: Path) -> Api:
        token = kubeconfig.load_access(config).token
        return Api(AsgiTransport(server, token=token), server)

    clients = {
        part: as_holder(serve.supervised_kubeconfig(state, part)) for part in accounts.SUPERVISED
    }
    clients["admin"] = as_holder(state.kubeconfig)
    try:
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "unistack-system"},
        }
        assert (await clients["admin"].call("POST", "/api/v1/namespaces", namespace))[0] == 201
        yield clients
    finally:
        server.stop()
        store.close()


def service(name: str, namespace: str) -> Obj:
    spec = {"ports": [{"port": 53, "protocol": "UDP"}]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def test_each_supervised_part_may_do_its_work_and_nothing_more(
    parts: dict[str, Api],
) -> None:
    registry, gateway, dns = parts["registry"], parts["gateway"], parts["dns"]
    openstack, controllers = parts["openstack"], parts["controllers"]
    # a stand-in reads whether its part's pods are Ready, and nothing else
    assert (await registry.call("GET", f"{SYSTEM}/pods"))[0] == 200
    status, body = await registry.call("GET", f"{SYSTEM}/secrets")
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"].startswith('secrets is forbidden: User "system:unistack:registry"')
    # the gateway follows Services and Endpoints besides
    for path in ("/api/v1/services", "/api/v1/endpoints", f"{SYSTEM}/pods"):
        assert (await gateway.call("GET", path))[0] == 200, path
    assert (await gateway.call("POST", f"{SYSTEM}/services", service("x", "unistack-system")))[
        0
    ] == 403
    # cluster DNS without pods publishes kube-dns, and reads no Secret
    assert (
        await dns.call(
            "POST", "/api/v1/namespaces/kube-system/services", service("kube-dns", "kube-system")
        )
    )[0] == 201
    assert (await dns.call("GET", "/apis/discovery.k8s.io/v1/endpointslices"))[0] == 200
    assert (await dns.call("DELETE", "/api/v1/namespaces/kube-system/services/kube-dns"))[0] == 403
    assert (await dns.call("GET", f"{SYSTEM}/secrets"))[0] == 403
    # the OpenStack APIs: their kinds and Nodes, not the pods or Secrets of the cluster
    assert (await openstack.call("GET", "/api/v1/nodes"))[0] == 200
    assert (await openstack.call("GET", f"{SYSTEM}/secrets"))[0] == 403
    assert (await openstack.call("DELETE", f"{SYSTEM}/pods/any"))[0] == 403
    # the controllers act on every kind, as kube-controller-manager does
    assert (await controllers.call("GET", f"{SYSTEM}/secrets"))[0] == 200
