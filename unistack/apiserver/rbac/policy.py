"""The default RBAC policy every cluster starts with, as kube-apiserver bootstraps it.

`cluster_roles()` and `cluster_role_bindings()` are data: `cluster-admin` (everything), the
user-facing `admin`, `edit` and `view` (aggregated, by the `aggregate-to-*` labels, from
`system:aggregate-to-*` and from each other: view ⊂ edit ⊂ admin), and the roles every
authenticated user is bound to: `system:discovery`, `system:basic-user` (the self reviews)
and `system:public-info-viewer` (also for the unauthenticated); and
`system:service-account-issuer-discovery`, the issuer's OpenID documents for service accounts
(`serviceaccounts`); and `system:auth-delegator`, bound to no one, for components that check
their callers' tokens. Each carries upstream's
`kubernetes.io/bootstrapping: rbac-defaults` label and upstream's
`rbac.authorization.kubernetes.io/autoupdate: "true"`: `bootstrap.ensure_rbac_defaults`
creates those that are absent and, at every start, puts back what a stored one lacks
(`rbac.reconcile`; "false" leaves it to the operator). The aggregation controller
(`unistack.kube.clusterroleaggregation`) fills the aggregated roles' rules.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver.kinds import rbac as kinds
from unistack.apiserver.rbac.reconcile import AUTOUPDATE

Obj = dict[str, Any]

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"


def _rule(verbs: tuple[str, ...], groups: tuple[str, ...], resources: tuple[str, ...]) -> Obj:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _urls(verbs: tuple[str, ...], *urls: str) -> Obj:
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


def _meta(name: str, aggregate_to: str = "") -> Obj:
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    if aggregate_to:
        labels[AGGREGATE_TO + aggregate_to] = "true"
    return {"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}}


def _role(name: str, rules: list[Obj], aggregate_to: str = "") -> Obj:
    return {
        "apiVersion": kinds.CLUSTER_ROLE.api_version,
        "kind": kinds.CLUSTER_ROLE.kind,
        "metadata": _meta(name, aggregate_to),
        "rules": rules,
    }


def _aggregated(name: str, gathers: str, aggregate_to: str = "") -> Obj:
    selector = {"matchLabels": {AGGREGATE_TO + gathers: "true"}}
    role = _role(name, [], aggregate_to)
    role["aggregationRule"] = {"clusterRoleSelectors": [selector]}
    return role


_VIEW = [
    _rule(READ, ("",), ("configmaps", "endpoints", "persistentvolumeclaims",
                        "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                        "replicationcontrollers/scale", "serviceaccounts", "services",
                        "services/status")),
    _rule(READ, ("",), ("bindings", "events", "limitranges", "namespaces/status", "pods/log",
                        "pods/status", "replicationcontrollers/status", "resourcequotas",
                        "resourcequotas/status")),
    _rule(READ, ("",), ("namespaces",)),
    _rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
    _rule(READ, ("apps",), ("controllerrevisions", "daemonsets", "daemonsets/status",
                            "deployments", "deployments/scale", "deployments/status",
                            "replicasets", "replicasets/scale", "replicasets/status",
                            "statefulsets", "statefulsets/scale", "statefulsets/status")),
    _rule(READ, ("autoscaling",), ("horizontalpodautoscalers",
                                   "horizontalpodautoscalers/status")),
    _rule(READ, ("batch",), ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
    _rule(READ, ("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    _rule(READ, ("networking.k8s.io",), ("ingresses", "ingresses/status", "networkpolicies")),
]  # fmt: skip

_EDIT = [
    _rule(READ, ("",), ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
                        "services/proxy")),
    _rule(("impersonate",), ("",), ("serviceaccounts",)),
    _rule(WRITE, ("",), ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")),
    _rule(("create",), ("",), ("pods/eviction",)),
    _rule(WRITE, ("",), ("configmaps", "events", "persistentvolumeclaims",
                         "replicationcontrollers", "replicationcontrollers/scale", "secrets",
                         "serviceaccounts", "services", "services/proxy")),
    _rule(("create",), ("",), ("serviceaccounts/token",)),
    _rule(WRITE, ("apps",), ("daemonsets", "deployments", "deployments/rollback",
                             "deployments/scale", "replicasets", "replicasets/scale",
                             "statefulsets", "statefulsets/scale")),
    _rule(WRITE, ("autoscaling",), ("horizontalpodautoscalers",)),
    _rule(WRITE, ("batch",), ("cronjobs", "jobs")),
    _rule(WRITE, ("policy",), ("poddisruptionbudgets",)),
    _rule(WRITE, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
    _rule(READ + WRITE, ("coordination.k8s.io",), ("leases",)),
]  # fmt: skip

_ADMIN = [
    _rule(("create",), ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
    _rule(READ + WRITE, (kinds.GROUP,), ("rolebindings", "roles")),
]

_BASIC_USER = [
    _rule(("create",), ("authorization.k8s.io",),
          ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
    _rule(("create",), ("authentication.k8s.io",), ("selfsubjectreviews",)),
]  # fmt: skip

_DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                   "/openapi/*", "/readyz", "/version", "/version/")  # fmt: skip
_PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")
_ISSUER_URLS = ("/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                "/openid/v1/jwks", "/openid/v1/jwks/")  # fmt: skip


def cluster_roles() -> list[Obj]:
    return [
        _role("cluster-admin", [_rule(("*",), ("*",), ("*",)), _urls(("*",), "*")]),
        _aggregated("admin", "admin"),
        _aggregated("edit", "edit", aggregate_to="admin"),
        _aggregated("view", "view", aggregate_to="edit"),
        _role("system:aggregate-to-admin", _ADMIN, aggregate_to="admin"),
        _role("system:aggregate-to-edit", _EDIT, aggregate_to="edit"),
        _role("system:aggregate-to-view", _VIEW, aggregate_to="view"),
        _role("system:discovery", [_urls(("get",), *_DISCOVERY_URLS)]),
        _role("system:basic-user", _BASIC_USER),
        _role("system:public-info-viewer", [_urls(("get",), *_PUBLIC_URLS)]),
        _role("system:service-account-issuer-discovery", [_urls(("get",), *_ISSUER_URLS)]),
        _role(
            "system:auth-delegator",
            [
                _rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                _rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
            ],
        ),
    ]


def _binding(role: str, *groups: str) -> Obj:
    return {
        "apiVersion": kinds.CLUSTER_ROLE_BINDING.api_version,
        "kind": kinds.CLUSTER_ROLE_BINDING.kind,
        "metadata": _meta(role),
        "roleRef": {"apiGroup": kinds.GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": kinds.GROUP, "kind": "Group", "name": g} for g in groups],
    }


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "system:masters"),
        _binding("system:discovery", "system:authenticated"),
        _binding("system:basic-user", "system:authenticated"),
        _binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
        _binding("system:service-account-issuer-discovery", "system:serviceaccounts"),
    ]
