"""The rbac.authorization.k8s.io/v1 kinds: validation as upstream's, defaults, table cells, and
the default policy (every bootstrap object is valid) and the aggregation decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from unistack.apiserver import tables
from unistack.apiserver.kinds import rbac
from unistack.apiserver.rbac import policy
from unistack.apiserver.resources import ResourceType
from unistack.kube.clusterroleaggregation import aggregated_rules, needs_update

Obj = dict[str, Any]
REF = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}


def _errors(rt: ResourceType, obj: Obj, old: Obj | None = None) -> list[str]:
    assert rt.validator is not None
    return [f"{e.field}: {e.message()}" for e in rt.validator(obj, old)]


def _role(*rules: Obj) -> Obj:
    return {"metadata": {"name": "r", "namespace": "team"}, "rules": list(rules)}


def _binding(ref: Obj = REF, *subjects: Obj) -> Obj:
    return {"metadata": {"name": "b", "namespace": "team"}, "roleRef": ref,
            "subjects": list(subjects)}  # fmt: skip


def test_rules_need_verbs_and_resource_rules_need_groups_and_resources() -> None:
    assert _errors(rbac.ROLE, _role({"verbs": ["get"], "apiGroups": [""],
                                     "resources": ["pods"]})) == []  # fmt: skip
    assert _errors(rbac.ROLE, _role({"resources": ["pods"]})) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
    ]
    assert _errors(rbac.ROLE, _role({"verbs": ["get"], "apiGroups": [""]})) == [
        "rules[0].resources: Required value: resource rules must supply at least one resource",
    ]


def test_non_resource_urls_are_for_cluster_roles_and_alone_in_their_rule() -> None:
    urls = {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}
    assert _errors(rbac.CLUSTER_ROLE, _role(urls)) == []
    assert _errors(rbac.ROLE, _role(urls)) == [
        'rules[0].nonResourceURLs: Invalid value: ["/healthz"]: '
        "namespaced rules cannot apply to non-resource URLs"
    ]
    both = {**urls, "resources": ["pods"]}
    assert _errors(rbac.CLUSTER_ROLE, _role(both)) == [
        'rules[0].nonResourceURLs: Invalid value: ["/healthz"]: '
        "rules cannot apply to both regular resources and non-resource URLs"
    ]


def test_an_aggregation_rule_needs_a_selector() -> None:
    role = {"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}}
    assert _errors(rbac.CLUSTER_ROLE, role) == [
        "aggregationRule.clusterRoleSelectors: Required value: "
        "at least one clusterRoleSelector required if aggregationRule is non-nil"
    ]


@pytest.mark.parametrize(
    ("rt", "ref", "problem"),
    [
        (rbac.ROLE_BINDING, {**REF, "apiGroup": "rbac"},
         'roleRef.apiGroup: Unsupported value: "rbac": supported values: '
         '"rbac.authorization.k8s.io"'),
        (rbac.ROLE_BINDING, {**REF, "kind": "Pod"},
         'roleRef.kind: Unsupported value: "Pod": supported values: "Role", "ClusterRole"'),
        (rbac.CLUSTER_ROLE_BINDING, {**REF, "kind": "Role"},
         'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
        (rbac.ROLE_BINDING, {**REF, "name": ""}, "roleRef.name: Required value"),
    ],
)  # fmt: skip
def test_a_role_ref_names_a_role_of_this_group(rt: ResourceType, ref: Obj, problem: str) -> None:
    assert _errors(rt, _binding(ref)) == [problem]


def test_subjects_follow_upstream() -> None:
    user = {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}
    account = {"kind": "ServiceAccount", "name": "robot"}
    assert _errors(rbac.ROLE_BINDING, _binding(REF, user, account)) == []
    assert _errors(rbac.CLUSTER_ROLE_BINDING, _binding(REF, account)) == [
        "subjects[0].namespace: Required value"
    ]
    assert _errors(rbac.ROLE_BINDING, _binding(REF, {"kind": "Robot", "name": "x"})) == [
        'subjects[0].kind: Unsupported value: "Robot": supported values: '
        '"ServiceAccount", "User", "Group"'
    ]
    assert _errors(rbac.ROLE_BINDING, _binding(REF, {"kind": "Group", "name": "g"})) == [
        'subjects[0].apiGroup: Unsupported value: "": supported values: "rbac.authorization.k8s.io"'
    ]
    defaulted = _binding(REF, {"kind": "Group", "name": "g"}, dict(account))
    assert rbac.ROLE_BINDING.defaulter is not None
    rbac.ROLE_BINDING.defaulter(defaulted)
    assert defaulted["subjects"] == [{"kind": "Group", "name": "g", "apiGroup": rbac.GROUP},
                                     account]  # fmt: skip


def test_the_role_ref_cannot_change() -> None:
    old = _binding()
    new = _binding({**REF, "name": "edit"})
    assert _errors(rbac.ROLE_BINDING, new, old) == [
        'roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole",'
        '"name":"edit"}: cannot change roleRef'
    ]


def test_tables_show_what_kubectl_shows() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    robot = {"kind": "ServiceAccount", "name": "robot", "namespace": "team"}
    binding = _binding(
        REF, {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"}, robot
    )
    binding["metadata"]["creationTimestamp"] = "2024-05-01T11:00:00Z"
    cells = {c.name: tables.cell(c, binding, now) for c in rbac.ROLE_BINDING.columns}
    assert cells == {"Role": "ClusterRole/view", "Age": "60m", "Users": "alice",
                     "Groups": "dev", "ServiceAccounts": "team/robot"}  # fmt: skip
    role = _role()
    role["metadata"]["creationTimestamp"] = "2024-05-01T11:00:00Z"
    assert [tables.cell(c, role, now) for c in rbac.ROLE.columns] == ["2024-05-01T11:00:00Z"]


def test_the_default_policy_is_valid() -> None:
    for role in policy.cluster_roles():
        assert _errors(rbac.CLUSTER_ROLE, role) == [], role["metadata"]["name"]
        assert role["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    for binding in policy.cluster_role_bindings():
        assert _errors(rbac.CLUSTER_ROLE_BINDING, binding) == [], binding["metadata"]["name"]


# --- aggregation (the controller's decision) --------------------------------------------------


def test_aggregated_rules_are_the_union_of_the_selected_roles_in_name_order() -> None:
    roles = {r["metadata"]["name"]: r for r in policy.cluster_roles()}
    view = aggregated_rules(roles["view"], roles.values())
    assert view == roles["system:aggregate-to-view"]["rules"]
    filled = {**roles, "view": {**roles["view"], "rules": view}}
    edit = aggregated_rules(filled["edit"], filled.values())
    assert edit == roles["system:aggregate-to-edit"]["rules"] + view
    assert needs_update(roles["edit"], edit) and not needs_update(
        {**roles["edit"], "rules": edit}, edit
    )
    # a role's own rules and an unselected role's never count
    extra = {"metadata": {"name": "zz", "labels": {}}, "rules": [{"verbs": ["get"]}]}
    own = {**roles["view"], "rules": [{"verbs": ["list"], "resources": ["secrets"]}]}
    assert aggregated_rules(own, [*roles.values(), own, extra]) == view


def test_an_empty_selector_gathers_every_other_role_and_none_gathers_nothing() -> None:
    """Upstream's LabelSelectorAsSelector: {} selects everything; selectors go in order."""
    a = {"metadata": {"name": "a", "labels": {"x": "1"}}, "rules": [{"verbs": ["get"]}]}
    b = {"metadata": {"name": "b"}, "rules": [{"verbs": ["list"]}]}
    every = {"metadata": {"name": "all"}, "aggregationRule": {"clusterRoleSelectors": [{}]}}
    assert aggregated_rules(every, [a, b, every]) == [{"verbs": ["get"]}, {"verbs": ["list"]}]
    ordered = {"metadata": {"name": "o"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]},
        {"matchLabels": {"x": "1"}},
    ]}}  # fmt: skip
    assert aggregated_rules(ordered, [a, b]) == [{"verbs": ["list"]}, {"verbs": ["get"]}]
    assert aggregated_rules({"metadata": {"name": "n"}}, [a, b]) == []
