"""rbac.authorization.k8s.io/v1 protobuf field tables: what `kubectl create role`,
`create clusterrole`, `create rolebinding` and `create clusterrolebinding` send.

Part of the wire contract `protobuf_schema` describes (format and flags are explained there).
RoleRef's fields and a Subject's kind and name have no `omitempty` upstream, so they are kept.
"""

from __future__ import annotations

from unistack.apiserver import protobuf_schema

RBAC: protobuf_schema.Messages = {
    "rbac/v1.Role": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("rules", "rbac/v1.PolicyRule", "repeated"),
    },
    "rbac/v1.ClusterRole": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("rules", "rbac/v1.PolicyRule", "repeated"),
        3: ("aggregationRule", "rbac/v1.AggregationRule"),
    },
    "rbac/v1.AggregationRule": {
        1: ("clusterRoleSelectors", "meta/v1.LabelSelector", "repeated"),
    },
    "rbac/v1.PolicyRule": {
        1: ("verbs", "string", "repeated"),
        2: ("apiGroups", "string", "repeated"),
        3: ("resources", "string", "repeated"),
        4: ("resourceNames", "string", "repeated"),
        5: ("nonResourceURLs", "string", "repeated"),
    },
    "rbac/v1.RoleBinding": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("subjects", "rbac/v1.Subject", "repeated"),
        3: ("roleRef", "rbac/v1.RoleRef"),
    },
    "rbac/v1.ClusterRoleBinding": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("subjects", "rbac/v1.Subject", "repeated"),
        3: ("roleRef", "rbac/v1.RoleRef"),
    },
    "rbac/v1.RoleRef": {
        1: ("apiGroup", "string", "keep"),
        2: ("kind", "string", "keep"),
        3: ("name", "string", "keep"),
    },
    "rbac/v1.Subject": {
        1: ("kind", "string", "keep"),
        2: ("apiGroup", "string"),
        3: ("name", "string", "keep"),
        4: ("namespace", "string"),
    },
}
