"""Each host's agent calls the API server as its node: RBAC from the node policy the API
server bootstraps (`accounts.node_policy`), narrowed by NodeRestriction to its own objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Api
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator
from unistack.client.transport import AsgiTransport
from unistack.controlplane import accounts
from unistack.store import SqliteStore

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


@dataclass
class Nodes:
    admin: Api
    alpha: Api  # system:node:alpha
    beta: Api


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        'admin-token,unistack-admin,1,"system:masters"\n'
        'alpha-token,system:node:alpha,2,"system:nodes"\n'
        'beta-token,system:node:beta,3,"system:nodes"\n'
    )
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(
        store,
        authenticator=TokenFileAuthenticator(tokens),
        policy=tuple(accounts.node_policy()),
    )
    await server.start()

    def as_token(token: str) -> Api:
        return Api(AsgiTransport(server, token=token), server)

    try:
        yield Nodes(as_token("admin-token"), as_token("alpha-token"), as_token("beta-token"))
    finally:
        server.stop()
        store.close()


def node(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def pod(name: str, node_name: str) -> Obj:
    spec = {"nodeName": node_name, "containers": [{"name": "c", "image": "busybox"}]}
    meta = {"name": name, "namespace": "default"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


async def test_a_node_writes_only_its_own_node_lease_and_pods(nodes: Nodes) -> None:
    alpha, beta, admin = nodes.alpha, nodes.beta, nodes.admin
    assert (await alpha.call("POST", "/api/v1/nodes", node("alpha")))[0] == 201
    assert (await beta.call("POST", "/api/v1/nodes", node("beta")))[0] == 201
    status, body = await alpha.call(
        "PATCH", "/api/v1/nodes/beta", {"metadata": {"labels": {"x": "y"}}}, content_type=MERGE
    )
    assert status == 403
    assert body["message"] == (
        'nodes "beta" is forbidden: node "alpha" is not allowed to modify node "beta"'
    )
    status, _ = await alpha.call(
        "PATCH", "/api/v1/nodes/alpha/status", {"status": {"phase": "Running"}},
        content_type=MERGE,
    )  # fmt: skip
    assert status == 200
    assert (await alpha.call("DELETE", "/api/v1/nodes/beta"))[0] == 403

    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "alpha"}, "spec": {"holderIdentity": "alpha"}}  # fmt: skip
    assert (await alpha.call("POST", LEASES, lease))[0] == 201
    stolen = {**lease, "metadata": {"name": "beta"}}
    status, body = await alpha.call("POST", LEASES, stolen)
    assert status == 403 and "same name as the requesting node" in body["message"]

    path = "/api/v1/namespaces/default/pods"
    for name, bound in (("on-alpha", "alpha"), ("on-beta", "beta")):
        status, _ = await admin.call("POST", path, pod(name, bound))
        assert status == 201
    ready = {"status": {"phase": "Running"}}
    status, _ = await alpha.call("PATCH", f"{path}/on-alpha/status", ready, content_type=MERGE)
    assert status == 200
    status, body = await alpha.call("PATCH", f"{path}/on-beta/status", ready, content_type=MERGE)
    assert status == 403
    assert body["message"] == (
        'pods "on-beta" is forbidden: node "alpha" can only update pods with spec.nodeName '
        "set to itself"
    )
    assert (await alpha.call("DELETE", f"{path}/on-beta"))[0] == 403
    assert (await alpha.call("DELETE", f"{path}/on-alpha"))[0] == 200
    # RBAC gives nodes no pod creation, and nothing beyond the agent's role
    assert (await alpha.call("POST", path, pod("made", "alpha")))[0] == 403
    status, body = await alpha.call("GET", "/api/v1/namespaces/default/secrets/none")
    assert status == 403  # no pod of its uses it (below)
    assert (await alpha.call("DELETE", "/api/v1/namespaces/default/secrets/none"))[0] == 403
    status, _ = await admin.call(
        "GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/unistack-agent-nodes"
    )
    assert status == 200


async def test_a_node_reads_only_what_its_pods_use(nodes: Nodes) -> None:
    """Upstream's Node authorizer: a Secret, ConfigMap, claim, its volume or a token of a
    ServiceAccount only when a pod bound to the node names it."""
    alpha, beta, admin = nodes.alpha, nodes.beta, nodes.admin
    ns = "/api/v1/namespaces/default"
    used = pod("uses", "alpha")
    used["spec"] |= {
        "serviceAccountName": "robot",
        "volumes": [
            {"name": "s", "secret": {"secretName": "app-secret"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ],
    }
    used["spec"]["containers"][0]["env"] = [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "x"}}}
    ]
    for path, obj in (
        (f"{ns}/secrets", {"metadata": {"name": "app-secret"}, "data": {}}),
        (f"{ns}/secrets", {"metadata": {"name": "other-secret"}, "data": {}}),
        (f"{ns}/configmaps", {"metadata": {"name": "app-config"}, "data": {"x": "1"}}),
        (f"{ns}/serviceaccounts", {"metadata": {"name": "robot"}}),
        (f"{ns}/pods", used),
    ):
        status, body = await admin.call("POST", path, obj)
        assert status == 201, body
    for path in (f"{ns}/secrets/app-secret", f"{ns}/configmaps/app-config"):
        assert (await alpha.call("GET", path))[0] == 200, path
        status, body = await beta.call("GET", path)
        assert status == 403, path
        assert body["message"].endswith("no relationship found between node 'beta' and this object")
    assert (await alpha.call("GET", f"{ns}/secrets/other-secret"))[0] == 403
    assert (await alpha.call("GET", f"{ns}/persistentvolumeclaims/data"))[0] == 404  # not made
    assert (await beta.call("GET", f"{ns}/persistentvolumeclaims/data"))[0] == 403
    # an ephemeral volume's claim is named <pod>-<volume>, a name the pod never spells out
    assert (await alpha.call("GET", f"{ns}/persistentvolumeclaims/uses-scratch"))[0] == 404
    assert (await beta.call("GET", f"{ns}/persistentvolumeclaims/uses-scratch"))[0] == 403
    volume = {
        "metadata": {"name": "pv-data"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/pv-data"},
            "claimRef": {"namespace": "default", "name": "data"},
        },
    }
    assert (await admin.call("POST", "/api/v1/persistentvolumes", volume))[0] == 201
    assert (await alpha.call("GET", "/api/v1/persistentvolumes/pv-data"))[0] == 200
    assert (await beta.call("GET", "/api/v1/persistentvolumes/pv-data"))[0] == 403
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": ["api"], "expirationSeconds": 600}}  # fmt: skip
    token = f"{ns}/serviceaccounts/robot/token"
    assert (await beta.call("POST", token, request))[0] == 403
    assert (await alpha.call("POST", f"{ns}/serviceaccounts/default/token", request))[0] == 403
    status, body = await alpha.call("POST", token, request)  # bound to nothing
    assert status == 403 and body["message"].endswith("not bound to a pod"), body
    uid = (await admin.call("GET", f"{ns}/pods/uses"))[1]["metadata"]["uid"]
    request["spec"]["boundObjectRef"] = {
        "kind": "Pod",
        "apiVersion": "v1",
        "name": "uses",
        "uid": uid,
    }
    status, body = await alpha.call("POST", token, request)
    assert status == 201, body
    other = pod("elsewhere", "beta")
    other["spec"]["serviceAccountName"] = "robot"
    assert (await admin.call("POST", f"{ns}/pods", other))[0] == 201
    request["spec"]["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": "elsewhere"}
    status, body = await alpha.call("POST", token, request)
    assert status == 403 and body["message"].endswith("scheduled on a different node"), body
