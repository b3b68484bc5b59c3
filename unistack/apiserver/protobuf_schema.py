"""The Kubernetes protobuf wire contract, as data: which field number carries which JSON field.

`protobuf` decodes request bodies with these tables. A message is a mapping of field number to
`(json name, type)` or `(json name, type, flag)`. The type is a scalar (`string`, `int32`,
`int64`, `bool`, `bytes`, `double`, or `raw`, the envelope's undecoded payload) or the name of
another message, written `group/version.Kind` as in the upstream `generated.proto` files. The
flag says how the field is laid out or serialised:

- `repeated`: the field occurs once per list item;
- `map`: the field occurs once per entry, each a message {1: string key, 2: value of the type};
- `inline`: the message's fields are JSON fields of the parent (Go embedded structs);
- `keep`: a zero value is still written in JSON (a Go pointer, or no `omitempty`), so `false`,
  `0` and `""` survive; other scalars are left out when zero, as Go's JSON encoder does.

Message fields are always kept when present on the wire: Go writes non-pointer structs even when
empty, and JSON writes them too (`"status": {}`). The numbers come from upstream
k8s.io/api and k8s.io/apimachinery; field names are the JSON names of the Go types.

This module holds the envelope, the well-known value types and meta/v1; the API groups have
their own tables in `protobuf_schema_core`, `protobuf_schema_pod`, `protobuf_schema_apps`,
`protobuf_schema_batch`, `protobuf_schema_authentication`, `protobuf_schema_authorization`
and `protobuf_schema_rbac`, and `KINDS` says which top-level message a body of each
(apiVersion, kind) holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

Flag: TypeAlias = Literal["repeated", "map", "inline", "keep"]
FieldSpec: TypeAlias = tuple[str, str] | tuple[str, str, Flag]
Messages: TypeAlias = dict[str, dict[int, FieldSpec]]

SCALARS = frozenset({"string", "int32", "int64", "bool", "bytes", "double", "raw"})


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: its JSON name, its type and how it is laid out."""

    name: str
    type: str
    flag: Flag | None = None

    @property
    def is_message(self) -> bool:
        return self.type not in SCALARS


Schema: TypeAlias = dict[str, dict[int, Field]]


def compile_schema(*tables: Messages) -> Schema:
    """Merge message tables into one schema; a reference to an undeclared message is an error."""
    schema: Schema = {}
    for table in tables:
        for message, specs in table.items():
            schema[message] = {number: Field(*spec) for number, spec in specs.items()}
    for message, fields in schema.items():
        _check_references(schema, message, fields)
    for message in [*KINDS.values(), *KINDS_IN_EVERY_VERSION.values()]:
        if message not in schema:
            raise ValueError(f"KINDS refers to undeclared {message}")
    return schema


def _check_references(schema: Schema, message: str, fields: dict[int, Field]) -> None:
    for number, field in fields.items():
        if field.is_message and field.type not in schema:
            raise ValueError(f"{message} field {number} refers to undeclared {field.type}")


# (apiVersion, kind) of a body -> the message its `raw` bytes hold.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "core/v1.Namespace",
    ("v1", "ConfigMap"): "core/v1.ConfigMap",
    ("v1", "Secret"): "core/v1.Secret",
    ("v1", "ServiceAccount"): "core/v1.ServiceAccount",
    ("v1", "Service"): "core/v1.Service",
    ("apps/v1", "Deployment"): "apps/v1.Deployment",
    ("batch/v1", "Job"): "batch/v1.Job",
    ("authentication.k8s.io/v1", "TokenRequest"): "authentication/v1.TokenRequest",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication/v1.SelfSubjectReview",
    ("authentication.k8s.io/v1", "TokenReview"): "authentication/v1.TokenReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): (
        "authorization/v1.SelfSubjectAccessReview"
    ),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): (
        "authorization/v1.SelfSubjectRulesReview"
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac/v1.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac/v1.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac/v1.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac/v1.ClusterRoleBinding",
}

# Kinds accepted under any apiVersion: clients label them with the group version they call.
KINDS_IN_EVERY_VERSION: dict[str, str] = {"DeleteOptions": "meta/v1.DeleteOptions"}

ENVELOPE = "runtime.Unknown"

RUNTIME: Messages = {
    "runtime.Unknown": {
        1: ("typeMeta", "runtime.TypeMeta"),
        2: ("raw", "raw", "keep"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "runtime.TypeMeta": {
        1: ("apiVersion", "string"),
        2: ("kind", "string"),
    },
}

# Value types whose JSON form is not an object; `protobuf` converts them. Their fields are
# all kept so that the conversion sees explicit zeros.
VALUES: Messages = {
    "meta/v1.Time": {
        1: ("seconds", "int64", "keep"),
        2: ("nanos", "int32", "keep"),
    },
    "meta/v1.FieldsV1": {
        1: ("Raw", "raw", "keep"),
    },
    "intstr.IntOrString": {
        1: ("type", "int64", "keep"),
        2: ("intVal", "int32", "keep"),
        3: ("strVal", "string", "keep"),
    },
    "resource.Quantity": {
        1: ("string", "string", "keep"),
    },
}

META: Messages = {
    "meta/v1.ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        4: ("selfLink", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int64"),
        8: ("creationTimestamp", "meta/v1.Time"),
        9: ("deletionTimestamp", "meta/v1.Time"),
        10: ("deletionGracePeriodSeconds", "int64", "keep"),
        11: ("labels", "string", "map"),
        12: ("annotations", "string", "map"),
        13: ("ownerReferences", "meta/v1.OwnerReference", "repeated"),
        14: ("finalizers", "string", "repeated"),
        17: ("managedFields", "meta/v1.ManagedFieldsEntry", "repeated"),
    },
    "meta/v1.OwnerReference": {
        1: ("kind", "string", "keep"),
        3: ("name", "string", "keep"),
        4: ("uid", "string", "keep"),
        5: ("apiVersion", "string", "keep"),
        6: ("controller", "bool", "keep"),
        7: ("blockOwnerDeletion", "bool", "keep"),
    },
    "meta/v1.ManagedFieldsEntry": {
        1: ("manager", "string"),
        2: ("operation", "string"),
        3: ("apiVersion", "string"),
        4: ("time", "meta/v1.Time"),
        6: ("fieldsType", "string"),
        7: ("fieldsV1", "meta/v1.FieldsV1"),
        8: ("subresource", "string"),
    },
    "meta/v1.LabelSelector": {
        1: ("matchLabels", "string", "map"),
        2: ("matchExpressions", "meta/v1.LabelSelectorRequirement", "repeated"),
    },
    "meta/v1.LabelSelectorRequirement": {
        1: ("key", "string", "keep"),
        2: ("operator", "string", "keep"),
        3: ("values", "string", "repeated"),
    },
    "meta/v1.DeleteOptions": {
        1: ("gracePeriodSeconds", "int64", "keep"),
        2: ("preconditions", "meta/v1.Preconditions"),
        3: ("orphanDependents", "bool", "keep"),
        4: ("propagationPolicy", "string", "keep"),
        5: ("dryRun", "string", "repeated"),
        6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "bool", "keep"),
    },
    "meta/v1.Preconditions": {
        1: ("uid", "string", "keep"),
        2: ("resourceVersion", "string", "keep"),
    },
    "meta/v1.Condition": {
        1: ("type", "string", "keep"),
        2: ("status", "string", "keep"),
        3: ("observedGeneration", "int64"),
        4: ("lastTransitionTime", "meta/v1.Time"),
        5: ("reason", "string", "keep"),
        6: ("message", "string", "keep"),
    },
}
