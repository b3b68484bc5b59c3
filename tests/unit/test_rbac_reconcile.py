"""Reconciling a stored default role or binding with the default policy (`rbac.reconcile`)."""

from __future__ import annotations

from typing import Any

from unistack.apiserver.rbac import policy
from unistack.apiserver.rbac.reconcile import (
    AUTOUPDATE,
    reconciled_binding,
    reconciled_role,
)

Obj = dict[str, Any]


def default(name: str, objects: list[Obj]) -> Obj:
    return next(obj for obj in objects if obj["metadata"]["name"] == name)


def stored(obj: Obj, **changes: Any) -> Obj:
    meta = {**obj["metadata"], "resourceVersion": "7", "uid": "u-1"}
    return {**obj, "metadata": meta, **changes}


def test_an_unchanged_default_needs_nothing() -> None:
    for role in policy.cluster_roles():
        assert reconciled_role(stored(role), role).obj is None
    for binding in policy.cluster_role_bindings():
        assert reconciled_binding(stored(binding), binding).obj is None


def test_a_missing_rule_comes_back_and_the_operators_own_stay() -> None:
    expected = default("system:basic-user", policy.cluster_roles())
    own = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
    existing = stored(expected, rules=[expected["rules"][1], own])
    existing["metadata"]["labels"] = {"team": "ops", "kubernetes.io/bootstrapping": "mine"}
    del existing["metadata"]["annotations"]  # made by a release without the promise
    outcome = reconciled_role(existing, expected)
    assert outcome.obj is not None and not outcome.recreate
    assert outcome.obj["rules"] == [expected["rules"][1], own, expected["rules"][0]]
    assert outcome.obj["metadata"]["resourceVersion"] == "7"  # an update of what was read
    # labels: the default's are added, the stored values win
    assert outcome.obj["metadata"]["labels"] == {
        "kubernetes.io/bootstrapping": "mine",
        "team": "ops",
    }
    assert outcome.obj["metadata"]["annotations"] == {AUTOUPDATE: "true"}
    assert outcome.added == ('{APIGroups:["authorization.k8s.io"], Resources:'
                             '["selfsubjectaccessreviews", "selfsubjectrulesreviews"], '
                             'Verbs:["create"]}',)  # fmt: skip


def test_a_rule_held_through_a_wider_one_is_not_added_again() -> None:
    expected = default("system:basic-user", policy.cluster_roles())
    wide = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["create"]}
    assert reconciled_role(stored(expected, rules=[wide]), expected).obj is None


def test_an_aggregated_role_gets_its_selectors_not_rules() -> None:
    expected = default("edit", policy.cluster_roles())
    filled = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    other = {"matchLabels": {"example.com/aggregate": "true"}}
    existing = stored(expected, rules=filled, aggregationRule={"clusterRoleSelectors": [other]})
    outcome = reconciled_role(existing, expected)
    assert outcome.obj is not None
    assert outcome.obj["rules"] == filled  # the aggregation controller's
    selectors = outcome.obj["aggregationRule"]["clusterRoleSelectors"]
    assert selectors == [other, *expected["aggregationRule"]["clusterRoleSelectors"]]


def test_autoupdate_false_leaves_it_to_the_operator() -> None:
    role = default("system:discovery", policy.cluster_roles())
    existing = stored(role, rules=[])
    existing["metadata"]["annotations"] = {AUTOUPDATE: "false"}
    assert reconciled_role(existing, role).obj is None
    binding = default("system:discovery", policy.cluster_role_bindings())
    existing = stored(binding, subjects=[])
    existing["metadata"]["annotations"] = {AUTOUPDATE: "false"}
    assert reconciled_binding(existing, binding).obj is None


def test_a_binding_gets_missing_subjects_and_is_made_again_for_another_role() -> None:
    expected = default("system:public-info-viewer", policy.cluster_role_bindings())
    user = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}
    existing = stored(expected, subjects=[user, expected["subjects"][1]])
    outcome = reconciled_binding(existing, expected)
    assert outcome.obj is not None and not outcome.recreate
    assert outcome.obj["subjects"] == [user, *expected["subjects"][1:], expected["subjects"][0]]
    assert outcome.added == ("subject Group system:authenticated",)

    other_role = {**expected["roleRef"], "name": "view"}
    outcome = reconciled_binding(stored(expected, roleRef=other_role), expected)
    assert outcome.obj is not None and outcome.recreate
    assert outcome.obj["roleRef"] == expected["roleRef"]
    assert outcome.obj["subjects"] == expected["subjects"]
