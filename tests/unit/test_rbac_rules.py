"""RBAC without a store: what a rule allows, what rules cover, whose rules apply where."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from unistack import store as storage
from unistack.apiserver.auth import Attributes, forbidden_message
from unistack.apiserver.rbac import policy
from unistack.apiserver.rbac.index import PREFIX, RbacIndex
from unistack.apiserver.rbac.rules import PolicyRule, allows, uncovered
from unistack.apiserver.request import User

Obj = dict[str, Any]


def rule(**fields: Any) -> PolicyRule:
    return PolicyRule.from_json(fields)


def resource(verb: str, res: str, *, group: str = "", sub: str = "", ns: str = "", name: str = ""):
    return Attributes(verb, "", group, res, sub, ns, name)


# --- matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "request_", "allowed"),
    [
        (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), resource("get", "pods"), True),
        (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), resource("list", "pods"), False),
        (rule(verbs=["*"], apiGroups=[""], resources=["pods"]), resource("delete", "pods"), True),
        (rule(verbs=["get"], apiGroups=["apps"], resources=["pods"]),
         resource("get", "pods"), False),
        (rule(verbs=["get"], apiGroups=["*"], resources=["deployments"]),
         resource("get", "deployments", group="apps"), True),
        (rule(verbs=["get"], apiGroups=[""], resources=["*"]), resource("get", "secrets"), True),
        # a subresource is its own resource: pods does not grant pods/log, and back
        (rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
         resource("get", "pods", sub="log"), False),
        (rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]),
         resource("get", "pods", sub="log"), True),
        (rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]),
         resource("get", "pods"), False),
        (rule(verbs=["update"], apiGroups=["apps"], resources=["*/scale"]),
         resource("update", "deployments", group="apps", sub="scale"), True),
        (rule(verbs=["update"], apiGroups=["apps"], resources=["*/scale"]),
         resource("update", "deployments", group="apps"), False),
        # resource names: only requests that name one of them
        (rule(verbs=["get"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
         resource("get", "configmaps", name="a"), True),
        (rule(verbs=["get"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
         resource("get", "configmaps", name="b"), False),
        (rule(verbs=["list"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
         resource("list", "configmaps"), False),
        # non-resource URLs: exact, or a prefix ending in *
        (rule(verbs=["get"], nonResourceURLs=["/healthz"]), Attributes("get", "/healthz"), True),
        (rule(verbs=["get"], nonResourceURLs=["/apis/*"]), Attributes("get", "/apis/apps"), True),
        (rule(verbs=["get"], nonResourceURLs=["/apis/*"]), Attributes("get", "/apis"), False),
        (rule(verbs=["get"], nonResourceURLs=["*"]), Attributes("get", "/metrics"), True),
        (rule(verbs=["get"], nonResourceURLs=["/api"]), Attributes("post", "/api"), False),
        # a resource rule never allows a path, nor a path rule a resource
        (rule(verbs=["*"], apiGroups=["*"], resources=["*"]), Attributes("get", "/api"), False),
        (rule(verbs=["*"], nonResourceURLs=["*"]), resource("get", "pods"), False),
    ],
)  # fmt: skip
def test_rule_matching(granted: PolicyRule, request_: Attributes, allowed: bool) -> None:
    assert allows(granted, request_) is allowed


# --- coverage, for the escalation check -------------------------------------------------------


def test_rules_cover_what_they_allow_and_no_more() -> None:
    edit_pods = rule(verbs=["get", "update"], apiGroups=[""], resources=["pods", "pods/log"])
    assert uncovered([edit_pods], [rule(verbs=["get"], apiGroups=[""], resources=["pods"])]) == []
    missing = uncovered([edit_pods], [rule(verbs=["get", "delete"], apiGroups=[""],
                                           resources=["pods"])])  # fmt: skip
    assert [str(m) for m in missing] == ['{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}']
    # "*" is only covered by "*"
    assert uncovered([edit_pods], [rule(verbs=["*"], apiGroups=[""], resources=["pods"])])
    everything = policy.cluster_roles()[0]["rules"]
    assert policy.cluster_roles()[0]["metadata"]["name"] == "cluster-admin"
    admin = [PolicyRule.from_json(r) for r in everything]
    assert uncovered(admin, [rule(verbs=["*"], apiGroups=["*"], resources=["*"])]) == []
    assert uncovered(admin, [rule(verbs=["get"], nonResourceURLs=["/apis/*"])]) == []


def test_names_subresources_and_urls_are_covered_by_their_wildcards() -> None:
    named = rule(verbs=["get"], apiGroups=[""], resources=["secrets"], resourceNames=["a", "b"])
    anyone = rule(verbs=["get"], apiGroups=[""], resources=["secrets"])
    assert uncovered([anyone], [named]) == []
    assert uncovered([named], [anyone])  # a rule for every secret is more than two names
    scales = rule(verbs=["update"], apiGroups=["apps"], resources=["*/scale"])
    assert uncovered([scales], [rule(verbs=["update"], apiGroups=["apps"],
                                     resources=["deployments/scale"])]) == []  # fmt: skip
    prefix = rule(verbs=["get"], nonResourceURLs=["/apis/*"])
    assert uncovered([prefix], [rule(verbs=["get"], nonResourceURLs=["/apis/apps"])]) == []
    assert uncovered([prefix], [rule(verbs=["get"], nonResourceURLs=["/api"])])


# --- whose rules apply where ------------------------------------------------------------------


def _event(plural: str, obj: Obj, namespace: str = "") -> storage.Event:
    name = obj["metadata"]["name"]
    key = f"{PREFIX}{plural}/{namespace}/{name}" if namespace else f"{PREFIX}{plural}/{name}"
    return storage.Event(storage.EventType.ADDED, key, 1, orjson.dumps(obj))


def _binding(name: str, kind: str, role: str, *subjects: Obj) -> Obj:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}
    return {"metadata": {"name": name}, "roleRef": ref, "subjects": list(subjects)}


READ_PODS = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
ALICE = User("alice", groups=("dev", "system:authenticated"))


def _index() -> RbacIndex:
    index = RbacIndex()
    index.apply(_event("clusterroles", {"metadata": {"name": "reader"}, "rules": [READ_PODS]}))
    index.apply(_event("roles", {"metadata": {"name": "cm"}, "rules": [
        {"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]}, "team"))  # fmt: skip
    return index


def test_bindings_grant_in_their_namespace_only() -> None:
    index = _index()
    dev_group = {"kind": "Group", "name": "dev"}
    index.apply(_event("rolebindings", _binding("r", "ClusterRole", "reader", dev_group), "team"))
    alice = {"kind": "User", "name": "alice"}
    index.apply(_event("rolebindings", _binding("c", "Role", "cm", alice), "team"))
    assert len(list(index.rules_for(ALICE, "team"))) == 2
    assert list(index.rules_for(ALICE, "other")) == []
    assert list(index.rules_for(ALICE, "")) == []
    assert list(index.rules_for(User("bob", groups=("system:authenticated",)), "team")) == []


def test_cluster_role_bindings_grant_everywhere_and_deletions_take_it_back() -> None:
    index = _index()
    binding = _binding("r", "ClusterRole", "reader", {"kind": "User", "name": "alice"})
    index.apply(_event("clusterrolebindings", binding))
    assert len(list(index.rules_for(ALICE, "anywhere"))) == 1
    assert len(list(index.rules_for(ALICE, ""))) == 1
    event = _event("clusterrolebindings", binding)
    index.apply(storage.Event(storage.EventType.DELETED, event.key, 2, event.value))
    assert list(index.rules_for(ALICE, "anywhere")) == []


def test_service_accounts_are_named_by_their_namespace() -> None:
    index = _index()
    robot = {"kind": "ServiceAccount", "name": "robot"}  # the binding's namespace by default
    index.apply(_event("rolebindings", _binding("r", "ClusterRole", "reader", robot), "team"))
    assert list(index.rules_for(User("system:serviceaccount:team:robot"), "team"))
    assert not list(index.rules_for(User("system:serviceaccount:other:robot"), "team"))


def test_a_binding_to_a_missing_role_grants_nothing() -> None:
    index = _index()
    binding = _binding("r", "ClusterRole", "nope", {"kind": "User", "name": "alice"})
    index.apply(_event("clusterrolebindings", binding))
    assert list(index.rules_for(ALICE, "team")) == []


def test_refusals_are_worded_as_kube_apiserver_words_them() -> None:
    user = User("x")
    assert forbidden_message(user, resource("list", "pods", ns="default")) == (
        'User "x" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert forbidden_message(user, resource("get", "nodes", sub="proxy")) == (
        'User "x" cannot get resource "nodes/proxy" in API group "" at the cluster scope'
    )
    assert forbidden_message(user, Attributes("get", "/metrics")) == (
        'User "x" cannot get path "/metrics"'
    )
