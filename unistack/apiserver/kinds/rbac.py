"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding and ClusterRoleBinding.

What the kinds are, not what they grant: validation follows upstream's ValidateRole,
ValidateClusterRole and ValidateRoleBinding (rules need verbs; resource rules need groups and
resources; a namespaced Role has no non-resource URLs; a roleRef names a Role or ClusterRole
of this group and never changes; subjects are Users, Groups or ServiceAccounts), subjects get
their default apiGroup, and the tables print what `kubectl get` prints. Role and binding names
are path segments (`system:discovery` is a name). Enforcement is `unistack.apiserver.rbac`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unistack.apiserver import validation
from unistack.apiserver.errors import (
    FieldError,
    invalid_field,
    required_field,
    unsupported_field,
)
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_name, problems_at
from unistack.apiserver.kinds.objects import Obj, dict_of, dicts_in, list_of
from unistack.apiserver.resources import Column, ResourceType

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


# --- rules ------------------------------------------------------------------------------------


def validate_role(role: Obj, old: Obj | None) -> list[FieldError]:
    return _check_rules(role.get("rules"), namespaced=True)


def validate_cluster_role(role: Obj, old: Obj | None) -> list[FieldError]:
    errs = _check_rules(role.get("rules"), namespaced=False)
    aggregation = role.get("aggregationRule")
    if aggregation is not None:
        errs += _check_aggregation(dict_of(aggregation))
    return errs


def _check_rules(rules: Any, *, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for index, rule in enumerate(dicts_in(rules)):
        errs += check_policy_rule(rule, namespaced, f"rules[{index}]")
    return errs


def check_policy_rule(rule: Obj, namespaced: bool, path: str) -> list[FieldError]:
    """Upstream's ValidatePolicyRule: a rule is about resources or about URLs, never both."""
    errs: list[FieldError] = []
    if not list_of(rule.get("verbs")):
        errs.append(required_field(f"{path}.verbs", "verbs must contain at least one value"))
    urls = list_of(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            detail = "namespaced rules cannot apply to non-resource URLs"
            errs.append(invalid_field(f"{path}.nonResourceURLs", urls, detail))
        if any(list_of(rule.get(k)) for k in ("apiGroups", "resources", "resourceNames")):
            detail = "rules cannot apply to both regular resources and non-resource URLs"
            errs.append(invalid_field(f"{path}.nonResourceURLs", urls, detail))
        return errs
    if not list_of(rule.get("apiGroups")):
        detail = "resource rules must supply at least one api group"
        errs.append(required_field(f"{path}.apiGroups", detail))
    if not list_of(rule.get("resources")):
        detail = "resource rules must supply at least one resource"
        errs.append(required_field(f"{path}.resources", detail))
    return errs


def _check_aggregation(aggregation: Obj) -> list[FieldError]:
    path = "aggregationRule.clusterRoleSelectors"
    selectors = list_of(aggregation.get("clusterRoleSelectors"))
    if not selectors:
        detail = "at least one clusterRoleSelector required if aggregationRule is non-nil"
        return [required_field(path, detail)]
    errs: list[FieldError] = []
    for index, selector in enumerate(selectors):
        errs += validation.validate_label_selector_spec(selector, f"{path}[{index}]")
    return errs


# --- bindings ---------------------------------------------------------------------------------


def validate_role_binding(binding: Obj, old: Obj | None) -> list[FieldError]:
    return _check_binding(binding, old, ("Role", "ClusterRole"), namespaced=True)


def validate_cluster_role_binding(binding: Obj, old: Obj | None) -> list[FieldError]:
    return _check_binding(binding, old, ("ClusterRole",), namespaced=False)


def _check_binding(
    binding: Obj, old: Obj | None, role_kinds: tuple[str, ...], *, namespaced: bool
) -> list[FieldError]:
    errs = _check_role_ref(dict_of(binding.get("roleRef")), role_kinds)
    for index, subject in enumerate(dicts_in(binding.get("subjects"))):
        errs += check_subject(subject, namespaced, f"subjects[{index}]")
    if old is not None and binding.get("roleRef") != old.get("roleRef"):
        errs.append(invalid_field("roleRef", binding.get("roleRef"), "cannot change roleRef"))
    return errs


def _check_role_ref(ref: Obj, role_kinds: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    if ref.get("apiGroup") != GROUP:
        errs.append(unsupported_field("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    if ref.get("kind") not in role_kinds:
        errs.append(unsupported_field("roleRef.kind", ref.get("kind", ""), list(role_kinds)))
    return errs + check_name("roleRef.name", ref.get("name"), validation.path_segment_errors)


def check_subject(subject: Obj, namespaced: bool, path: str) -> list[FieldError]:
    """Upstream's ValidateRoleBindingSubject."""
    name, kind, group = subject.get("name"), subject.get("kind"), subject.get("apiGroup", "")
    errs = [] if name else [required_field(f"{path}.name")]
    if kind == "ServiceAccount":
        if name:
            problems = validation.dns1123_subdomain_errors(str(name))
            errs += problems_at(f"{path}.name", name, problems)
        if group:
            errs.append(unsupported_field(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            errs.append(required_field(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(unsupported_field(f"{path}.apiGroup", group, [GROUP]))
    else:
        errs.append(unsupported_field(f"{path}.kind", kind, list(SUBJECT_KINDS)))
    return errs


def default_subjects(binding: Obj) -> None:
    """Upstream's SetDefaults_Subject: Users and Groups are of this group (ServiceAccounts
    are of the core group, which JSON leaves out)."""
    for subject in dicts_in(binding.get("subjects")):
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = GROUP


# --- tables -----------------------------------------------------------------------------------


def _role_of(obj: Obj) -> str:
    ref = dict_of(obj.get("roleRef"))
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subjects_of(kind: str, render: Callable[[Obj], str]) -> Callable[[Obj], str]:
    def cell(obj: Obj) -> str:
        found = [render(s) for s in dicts_in(obj.get("subjects")) if s.get("kind") == kind]
        return ", ".join(found)

    return cell


_ROLE_COLUMNS = (
    Column(
        "Created At",
        cells.text_at("metadata", "creationTimestamp"),
        type="date",
        description="When this object was created.",
    ),
)
_BINDING_COLUMNS = (
    Column("Role", _role_of, description="RoleRef is the reference to the role."),
    cells.AGE_COLUMN,
    Column("Users", _subjects_of("User", lambda s: str(s.get("name", ""))), priority=1,
           description="Users in the binding."),
    Column("Groups", _subjects_of("Group", lambda s: str(s.get("name", ""))), priority=1,
           description="Groups in the binding."),
    Column("ServiceAccounts",
           _subjects_of("ServiceAccount", lambda s: f"{s.get('namespace', '')}/{s.get('name')}"),
           priority=1, description="ServiceAccounts in the binding."),
)  # fmt: skip

ROLE = ResourceType(
    group=GROUP,
    version="v1",
    kind="Role",
    plural="roles",
    singular="role",
    namespaced=True,
    columns=_ROLE_COLUMNS,
    validator=validate_role,
    extra={"name_format": "path"},
)
CLUSTER_ROLE = ResourceType(
    group=GROUP,
    version="v1",
    kind="ClusterRole",
    plural="clusterroles",
    singular="clusterrole",
    namespaced=False,
    columns=_ROLE_COLUMNS,
    validator=validate_cluster_role,
    extra={"name_format": "path"},
)
ROLE_BINDING = ResourceType(
    group=GROUP,
    version="v1",
    kind="RoleBinding",
    plural="rolebindings",
    singular="rolebinding",
    namespaced=True,
    columns=_BINDING_COLUMNS,
    defaulter=default_subjects,
    validator=validate_role_binding,
    extra={"name_format": "path"},
)
CLUSTER_ROLE_BINDING = ResourceType(
    group=GROUP,
    version="v1",
    kind="ClusterRoleBinding",
    plural="clusterrolebindings",
    singular="clusterrolebinding",
    namespaced=False,
    columns=_BINDING_COLUMNS,
    defaulter=default_subjects,
    validator=validate_cluster_role_binding,
    extra={"name_format": "path"},
)
KINDS = (CLUSTER_ROLE_BINDING, CLUSTER_ROLE, ROLE_BINDING, ROLE)
