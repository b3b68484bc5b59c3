"""Reconciling the default RBAC policy with what is stored, as kube-apiserver does at start.

Upstream marks each default role and binding `rbac.authorization.kubernetes.io/autoupdate:
"true"` and, every time it starts, puts back what a default lacks without taking anything
away (its `reconcile` without `--remove-extra-permissions`):

- a ClusterRole gets the default rules it does not cover (a whole default rule, when any
  one-verb, one-resource piece of it is missing: nothing beyond the default's grants is
  added), and the label selectors of its default aggregationRule it lacks;
- a ClusterRoleBinding gets the default subjects it lacks; one whose roleRef differs (which
  cannot be updated) is made again with the default's roleRef and the union of subjects;
- labels and annotations the default has are added, the stored values winning;
- an object annotated `autoupdate: "false"` is the operator's and is left alone.

So a release that adds a permission to a default role (or a rule an operator removed by
mistake) is back after the next start, and an operator's additions stay. These are pure
functions of (stored, default); `bootstrap.ensure_rbac_defaults` reads and writes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from unistack.apiserver.rbac import rules

Obj = dict[str, Any]
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


def protected(obj: Obj) -> bool:
    """The operator has taken the object over (`autoupdate: "false"`)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(AUTOUPDATE) == "false"


@dataclass(frozen=True)
class Reconciled:
    """What to write: `obj` (None: nothing), by re-creating it when `recreate`; `added`
    says what was put back, for the log."""

    obj: Obj | None
    recreate: bool = False
    added: tuple[str, ...] = ()


def _merged_meta(result: Obj, expected: Obj) -> None:
    meta, wanted = result["metadata"], expected.get("metadata") or {}
    for field in ("labels", "annotations"):
        merged = {**(wanted.get(field) or {}), **(meta.get(field) or {})}
        if merged:
            meta[field] = merged


def _outcome(existing: Obj, result: Obj, added: list[str], recreate: bool = False) -> Reconciled:
    if result == existing:
        return Reconciled(None)
    return Reconciled(result, recreate, tuple(added))


def reconciled_role(existing: Obj, expected: Obj) -> Reconciled:
    """The stored ClusterRole with what the default has and it lacks."""
    if protected(existing):
        return Reconciled(None)
    result = copy.deepcopy(existing)
    _merged_meta(result, expected)
    held = rules.rules_of(existing)
    missing = [
        rule
        for rule in expected.get("rules") or []
        if rules.uncovered(held, [rules.PolicyRule.from_json(rule)])
    ]
    if missing:
        result["rules"] = [*(existing.get("rules") or []), *missing]
    added = [str(rules.PolicyRule.from_json(rule)) for rule in missing]
    wanted = (expected.get("aggregationRule") or {}).get("clusterRoleSelectors")
    if wanted:
        have = list((existing.get("aggregationRule") or {}).get("clusterRoleSelectors") or [])
        lacking = [selector for selector in wanted if selector not in have]
        if lacking:
            result["aggregationRule"] = {"clusterRoleSelectors": [*have, *lacking]}
            added += [f"aggregation selector {selector}" for selector in lacking]
    return _outcome(existing, result, added)


def reconciled_binding(existing: Obj, expected: Obj) -> Reconciled:
    """The stored ClusterRoleBinding with the default's subjects it lacks; re-created when
    it refers to another role."""
    if protected(existing):
        return Reconciled(None)
    result = copy.deepcopy(existing)
    _merged_meta(result, expected)
    have = list(existing.get("subjects") or [])
    lacking = [subject for subject in expected.get("subjects") or [] if subject not in have]
    if lacking:
        result["subjects"] = [*have, *lacking]
    added = [f"subject {s.get('kind')} {s.get('name')}" for s in lacking]
    if existing.get("roleRef") != expected.get("roleRef"):
        result["roleRef"] = expected["roleRef"]
        added.append(f"roleRef {expected['roleRef'].get('name')}")
        return _outcome(existing, result, added, recreate=True)
    return _outcome(existing, result, added)
