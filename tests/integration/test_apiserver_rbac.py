"""RBAC served and enforced by the in-process API server, over HTTP, for Keystone users.

The server authenticates a static admin token (system:masters) and Keystone tokens sealed
with a test key, as `unistack serve apiserver` does; the ClusterRole aggregation controller
runs beside it as the admin, as `unistack serve controllers` would. A Keystone tenant may do
nothing until a binding grants it something, and then only there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.integration.conftest import Api
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator, UnionAuthenticator
from unistack.apiserver.keystone import KeystoneAuthenticator
from unistack.client.api import Client
from unistack.client.transport import AsgiTransport
from unistack.kube.clusterroleaggregation import ClusterRoleAggregationController
from unistack.store import SqliteStore
from unistack.tokens import Claims, TokenCodec

Obj = dict[str, Any]
ADMIN_TOKEN = "static-admin-token"
PROJECT = "p1"
GROUP = "rbac.authorization.k8s.io"
RBAC = f"/apis/{GROUP}/v1"
CODEC = TokenCodec([Fernet.generate_key()])


def keystone_token(user: str, *roles: str, project: str = PROJECT) -> str:
    now = time.time()
    claims = Claims(f"id-{user}", ("password",), now - 1, now + 3600, ("audit",),
                    project_id=project, user_name=user, role_names=roles)  # fmt: skip
    return CODEC.seal(claims)


@dataclass
class Cluster:
    server: ApiServer
    admin: Api

    def as_token(self, token: str) -> Api:
        return Api(AsgiTransport(self.server, token=token), self.server)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"{ADMIN_TOKEN},unistack-admin,admin,system:masters\n")
    authenticator = UnionAuthenticator(TokenFileAuthenticator(tokens), KeystoneAuthenticator(CODEC))
    store = SqliteStore(str(tmp_path / "store.db"))
    server = ApiServer(store, authenticator=authenticator)
    await server.start()
    admin = Api(AsgiTransport(server, token=ADMIN_TOKEN), server)
    aggregation = ClusterRoleAggregationController(Client(admin.transport))
    running = asyncio.get_running_loop().create_task(aggregation.run())
    try:
        for name in ("team", "other"):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            assert (await admin.call("POST", "/api/v1/namespaces", body))[0] == 201
        yield Cluster(server, admin)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        server.stop()
        store.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """The RBAC index and the aggregation controller follow the store by watches."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def binding(name: str, role_kind: str, role: str, group: str) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "Group", "name": group}],
    }


def role(name: str, *rules: Obj) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": list(rules)}  # fmt: skip


async def grant(cluster: Cluster, namespace: str, cluster_role: str, user: Api) -> None:
    """Bind the project's members to a ClusterRole in one namespace, and wait until it counts
    (the role's aggregated rules filled, the binding in the authorizer's index)."""
    body = binding("project", "ClusterRole", cluster_role, f"keystone:project:{PROJECT}")
    path = f"{RBAC}/namespaces/{namespace}/rolebindings"
    assert (await cluster.admin.call("POST", path, body))[0] == 201

    async def can_list_pods() -> bool:
        return (await user.call("GET", f"/api/v1/namespaces/{namespace}/pods"))[0] == 200

    await eventually(can_list_pods)


async def grant_cluster_wide(cluster: Cluster, name: str, *rules: Obj) -> None:
    """A ClusterRole of `rules`, bound cluster-wide to the project's members."""
    made = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": list(rules)}  # fmt: skip
    assert (await cluster.admin.call("POST", f"{RBAC}/clusterroles", made))[0] == 201
    bound = {**binding(name, "ClusterRole", name, f"keystone:project:{PROJECT}"),
             "kind": "ClusterRoleBinding"}  # fmt: skip
    assert (await cluster.admin.call("POST", f"{RBAC}/clusterrolebindings", bound))[0] == 201


async def test_a_keystone_tenant_gets_what_a_role_binding_grants_and_only_there(
    cluster: Cluster,
) -> None:
    alice = cluster.as_token(keystone_token("alice", "member"))
    status, body = await alice.call("GET", "/api/v1/namespaces/team/pods")
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
        'in the namespace "team"'
    )
    assert body["details"] == {"kind": "pods"}
    # Every authenticated user may discover the API and ask what they may do.
    assert (await alice.call("GET", "/apis"))[0] == 200
    assert (await alice.call("GET", "/version"))[0] == 200

    await grant(cluster, "team", "edit", alice)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert (await alice.call("POST", "/api/v1/namespaces/team/configmaps", config_map))[0] == 201
    status, body = await alice.call("POST", "/api/v1/namespaces/other/configmaps", config_map)
    assert status == 403 and 'in the namespace "other"' in body["message"]
    assert (await alice.call("GET", "/api/v1/namespaces/other/pods"))[0] == 403
    status, body = await alice.call("GET", f"{RBAC}/clusterroles")
    assert status == 403 and body["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "alice" cannot list '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )
    # edit does not manage RBAC in its namespace; admin does
    assert (await alice.call("GET", f"{RBAC}/namespaces/team/roles"))[0] == 403
    # a member of another project is not bound
    bob = cluster.as_token(keystone_token("bob", "member", project="p2"))
    assert (await bob.call("GET", "/api/v1/namespaces/team/pods"))[0] == 403


async def test_access_and_rules_reviews_answer_from_rbac(cluster: Cluster) -> None:
    alice = cluster.as_token(keystone_token("alice", "member"))
    await grant(cluster, "team", "view", alice)
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "team"}},
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    status, body = await alice.call("POST", path, review)
    assert status == 201 and body["status"] == {"allowed": True}
    review["spec"]["resourceAttributes"]["verb"] = "delete"
    status, body = await alice.call("POST", path, review)
    assert status == 201 and body["status"] == {"allowed": False}

    rules_review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "team"},
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    status, body = await alice.call("POST", path, rules_review)
    assert status == 201, body
    resource_rules = body["status"]["resourceRules"]
    namespaces = {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["namespaces"]}
    reviews = ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]
    basic = {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": reviews}
    assert namespaces in resource_rules and basic in resource_rules
    assert any("/apis/*" in r["nonResourceURLs"] for r in body["status"]["nonResourceRules"])
    status, body = await alice.call("POST", path, {**rules_review, "spec": {"namespace": "other"}})
    assert all("pods" not in r.get("resources", []) for r in body["status"]["resourceRules"])


async def test_nobody_grants_what_they_do_not_hold(cluster: Cluster) -> None:
    alice = cluster.as_token(keystone_token("alice", "member"))
    await grant(cluster, "team", "admin", alice)
    roles = f"{RBAC}/namespaces/team/roles"
    read_pods = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    assert (await alice.call("POST", roles, role("reader", read_pods)))[0] == 201
    every_verb = {**read_pods, "verbs": ["*"]}
    status, body = await alice.call("POST", roles, role("wild", every_verb))
    assert status == 403 and body["reason"] == "Forbidden", body
    assert body["message"].startswith(
        'roles.rbac.authorization.k8s.io "wild" is forbidden: user "alice" (groups=['
    )
    assert body["message"].endswith(
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["*"]}'
    )
    # nor by raising a role they may edit
    status, stored = await alice.call("GET", f"{roles}/reader")
    status, body = await alice.call("PUT", f"{roles}/reader", {**stored, "rules": [every_verb]})
    assert status == 403, body

    bindings = f"{RBAC}/namespaces/team/rolebindings"
    to_admin = binding("root", "ClusterRole", "cluster-admin", "keystone:project:p1")
    status, body = await alice.call("POST", bindings, to_admin)
    assert status == 403 and "not currently held" in body["message"], body
    # binding a role whose rules they hold, there, is fine, also one created just before
    assert (await alice.call("POST", bindings, binding("r", "Role", "reader", "g")))[0] == 201
    assert (await alice.call("POST", bindings, binding("v", "ClusterRole", "view", "g")))[0] == 201
    status, body = await alice.call("POST", bindings, binding("m", "Role", "missing", "g"))
    assert status == 404, body

    # `escalate` on roles lets a user outside system:masters skip the check
    escalate = {"verbs": ["escalate"], "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles"]}  # fmt: skip
    assert (await cluster.admin.call("POST", roles, role("escalator", escalate)))[0] == 201
    status, _ = await cluster.admin.call("POST", bindings, binding(
        "escalators", "Role", "escalator", "keystone:project:p1"))  # fmt: skip
    assert status == 201

    async def may_escalate() -> bool:
        return (await alice.call("POST", roles, role("wild", every_verb)))[0] == 201

    await eventually(may_escalate)


async def test_a_cluster_role_cannot_be_relabelled_into_an_aggregate(cluster: Cluster) -> None:
    """Labels choose what an aggregated role gathers: changing only a ClusterRole's labels
    is checked like changing its rules, and an aggregationRule takes holding everything."""
    editor = {"verbs": ["get", "update", "patch", "create"], "apiGroups": [GROUP],
              "resources": ["clusterroles"]}  # fmt: skip
    await grant_cluster_wide(cluster, "role-editor", editor)
    alice = cluster.as_token(keystone_token("alice", "member"))

    async def may_read_cluster_admin() -> bool:
        return (await alice.call("GET", f"{RBAC}/clusterroles/cluster-admin"))[0] == 200

    await eventually(may_read_cluster_admin)
    _, stored = await alice.call("GET", f"{RBAC}/clusterroles/cluster-admin")
    labels = {**stored["metadata"].get("labels", {}),
              "rbac.authorization.k8s.io/aggregate-to-view": "true"}  # fmt: skip
    relabelled = {**stored, "metadata": {**stored["metadata"], "labels": labels}}
    status, answer = await alice.call("PUT", f"{RBAC}/clusterroles/cluster-admin", relabelled)
    assert status == 403 and "not currently held" in answer["message"], answer
    selectors = {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}
    gathering = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": "gatherer"}, "aggregationRule": selectors}  # fmt: skip
    status, answer = await alice.call("POST", f"{RBAC}/clusterroles", gathering)
    assert status == 403 and "cluster-admin privileges" in answer["message"], answer


async def test_a_namespace_and_a_list_narrowed_to_one_name_are_asked_as_such(
    cluster: Cluster,
) -> None:
    """As kube-apiserver's request attributes: reading a Namespace is in that namespace (a
    RoleBinding there covers it), and a list narrowed by `metadata.name` names the object
    (a rule with resourceNames covers it)."""
    alice = cluster.as_token(keystone_token("alice", "member"))
    assert (await alice.call("GET", "/api/v1/namespaces/team"))[0] == 403
    await grant(cluster, "team", "view", alice)
    named = {"verbs": ["get", "list", "watch"], "apiGroups": [""],
             "resources": ["namespaces"], "resourceNames": ["team"]}  # fmt: skip
    await grant_cluster_wide(cluster, "team-reader", named)

    async def lists_team_alone() -> bool:
        one = {"fieldSelector": "metadata.name=team"}
        status, body = await alice.call("GET", "/api/v1/namespaces", params=one)
        return status == 200 and [n["metadata"]["name"] for n in body["items"]] == ["team"]

    await eventually(lists_team_alone)
    assert (await alice.call("GET", "/api/v1/namespaces/team"))[0] == 200
    assert (await alice.call("GET", "/api/v1/namespaces"))[0] == 403  # every name: no
    assert (await alice.call("GET", "/api/v1/namespaces/other"))[0] == 403


async def test_a_role_ref_cannot_change(cluster: Cluster) -> None:
    path = f"{RBAC}/namespaces/team/rolebindings"
    status, created = await cluster.admin.call(
        "POST", path, binding("b", "ClusterRole", "view", "g")
    )
    assert status == 201
    changed = {**created, "roleRef": {**created["roleRef"], "name": "edit"}}
    status, body = await cluster.admin.call("PUT", f"{path}/b", changed)
    assert status == 422 and body["reason"] == "Invalid", body
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "roleRef",
            "message": 'Invalid value: {"apiGroup":"rbac.authorization.k8s.io",'
            '"kind":"ClusterRole","name":"edit"}: cannot change roleRef',
        }
    ]
    # subjects may change
    more = {**created, "subjects": [*created["subjects"], {"kind": "User", "name": "u"}]}
    assert (await cluster.admin.call("PUT", f"{path}/b", more))[0] == 200


async def test_aggregation_fills_roles_created_later(cluster: Cluster) -> None:
    admin = cluster.admin
    label = "example.com/aggregate-to-monitoring"
    monitoring = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]},
    }
    assert (await admin.call("POST", f"{RBAC}/clusterroles", monitoring))[0] == 201
    scrape = {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}
    widgets = {"verbs": ["get", "list"], "apiGroups": ["example.com"], "resources": ["widgets"]}
    to_view = "rbac.authorization.k8s.io/aggregate-to-view"
    for name, rule, labels in (
        ("metrics-reader", scrape, {label: "true"}),
        ("widget-viewer", widgets, {label: "true", to_view: "true"}),
    ):
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels}, "rules": [rule]}  # fmt: skip
        assert (await admin.call("POST", f"{RBAC}/clusterroles", body))[0] == 201

    async def rules_of(name: str) -> list[Obj]:
        return list((await admin.call("GET", f"{RBAC}/clusterroles/{name}"))[1].get("rules") or [])

    async def monitoring_filled() -> bool:
        return await rules_of("monitoring") == [scrape, widgets]

    await eventually(monitoring_filled)

    # through view, a chart's role reaches edit and admin
    async def admin_has_widgets() -> bool:
        return widgets in await rules_of("admin")

    await eventually(admin_has_widgets)
    assert widgets in await rules_of("edit") and widgets in await rules_of("view")


async def test_a_restart_puts_back_what_the_default_policy_lacks(tmp_path: Path) -> None:
    """As kube-apiserver at start: removed rules and subjects come back, an operator's
    changes stay, and `autoupdate: "false"` leaves a default alone."""
    store = SqliteStore(str(tmp_path / "store.db"))
    first = ApiServer(store)
    await first.start()
    api = Api(AsgiTransport(first), first)
    status, view = await api.call("GET", f"{RBAC}/clusterroles/system:basic-user")
    assert status == 200
    assert view["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    assert view["metadata"]["annotations"] == {
        "rbac.authorization.kubernetes.io/autoupdate": "true"
    }
    own = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
    merge = "application/merge-patch+json"
    changes = (  # (what, name, patch)
        ("clusterroles", "system:basic-user",
         {"metadata": {"labels": {"changed": "yes"}}, "rules": [view["rules"][1], own]}),
        ("clusterroles", "system:discovery",
         {"metadata": {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}},
          "rules": [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]}),
        ("clusterrolebindings", "system:public-info-viewer",
         {"subjects": [{"apiGroup": GROUP, "kind": "Group", "name": "system:unauthenticated"}]}),
    )  # fmt: skip
    for plural, name, patch in changes:
        status, _ = await api.call("PATCH", f"{RBAC}/{plural}/{name}", patch, content_type=merge)
        assert status == 200
    first.stop()

    second = ApiServer(store)  # a restart over the same store
    await second.start()
    api = Api(AsgiTransport(second), second)
    _, basic = await api.call("GET", f"{RBAC}/clusterroles/system:basic-user")
    assert basic["metadata"]["labels"]["changed"] == "yes"
    assert basic["rules"] == [view["rules"][1], own, view["rules"][0]]
    _, discovery = await api.call("GET", f"{RBAC}/clusterroles/system:discovery")
    assert discovery["rules"] == [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]
    _, body = await api.call("GET", f"{RBAC}/clusterrolebindings/system:public-info-viewer")
    assert [s["name"] for s in body["subjects"]] == [
        "system:unauthenticated",
        "system:authenticated",
    ]
    second.stop()
    store.close()
