"""How the lists of each built-in kind merge: the merge-key table, declared per kind.

`unistack.apiserver.patch` (strategic merge patch) and `unistack.apiserver.apply`
(server-side apply) both read it. It mirrors the tags on the Go types of k8s.io/api:
`patchStrategy`/`patchMergeKey` for strategic merge patch; `+listType`/`+listMapKey`,
`+structType=atomic` and `+mapType=atomic` for server-side apply. A path names fields only and
skips list items: `spec.template.spec.containers.ports` is the ports list of every container.
Lists missing from a kind's table are atomic (replaced whole). Kinds missing from `KINDS` are
custom resources: strategic merge patch is refused for them, and apply merges their maps
field by field and replaces their lists whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class ListRule:
    """How one list field merges.

    `merge_key` is the strategic-merge-patch key, None for a list of primitives merged as a
    set; `patch_merges` is False where strategic merge patch replaces the list whole.
    `apply_keys` are the server-side-apply list-map keys: () for a set of primitives, None
    where apply replaces the list whole.
    """

    merge_key: str | None
    patch_merges: bool = True
    apply_keys: tuple[str, ...] | None = ()


@dataclass(frozen=True, slots=True)
class KindSchema:
    """What the merge machinery knows of one kind.

    `atomic` names maps and structs that apply owns as one value (`+structType=atomic`,
    `+mapType=atomic`); naming a keyed list makes each of its items atomic. `zero` is what
    Go serialises for the kind's empty object: a create is compared against it.
    """

    lists: Mapping[str, ListRule]
    atomic: frozenset[str]
    zero: Mapping[str, Any]


def keyed(*keys: str) -> ListRule:
    """Merged by key in both patch and apply; apply keys on all of `keys`."""
    return ListRule(keys[0], True, keys)


def primitive_set() -> ListRule:
    return ListRule(None, True, ())


def keyed_in_patch_only(key: str) -> ListRule:
    """`patchStrategy=merge` but `+listType=atomic`."""
    return ListRule(key, True, None)


def keyed_in_apply_only(*keys: str) -> ListRule:
    """`+listType=map` with no patch strategy."""
    return ListRule(keys[0], False, keys)


# Defaults of list-map key fields, used when an item omits them (the OpenAPI `default`).
KEY_DEFAULTS: Mapping[str, Any] = MappingProxyType({"protocol": "TCP"})

EMPTY = KindSchema(MappingProxyType({}), frozenset(), MappingProxyType({}))


def _under(prefix: str, rules: Mapping[str, ListRule]) -> dict[str, ListRule]:
    return {f"{prefix}.{path}": rule for path, rule in rules.items()}


def _under_all(prefix: str, paths: frozenset[str]) -> frozenset[str]:
    return frozenset(f"{prefix}.{path}" for path in paths)


_META = {"finalizers": primitive_set(), "ownerReferences": keyed("uid")}
_META_ATOMIC = frozenset({"ownerReferences"})

_CONTAINER = {
    "ports": keyed("containerPort", "protocol"),
    "env": keyed("name"),
    "volumeMounts": keyed("mountPath"),
    "volumeDevices": keyed("devicePath"),
    "resources.claims": keyed_in_apply_only("name"),
}
_CONTAINER_ATOMIC = frozenset(
    f"env.valueFrom.{ref}"
    for ref in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
)
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

_POD_SPEC: dict[str, ListRule] = {
    "volumes": keyed("name"),
    "imagePullSecrets": keyed("name"),
    "hostAliases": keyed("ip"),
    "topologySpreadConstraints": keyed("topologyKey", "whenUnsatisfiable"),
    "schedulingGates": keyed("name"),
    "resourceClaims": keyed("name"),
}
for _name in _CONTAINER_LISTS:
    _POD_SPEC[_name] = keyed("name")
    _POD_SPEC.update(_under(_name, _CONTAINER))

_POD_SPEC_ATOMIC = frozenset(
    {
        "nodeSelector",
        "imagePullSecrets",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
        "topologySpreadConstraints.labelSelector",
    }
).union(*(_under_all(name, _CONTAINER_ATOMIC) for name in _CONTAINER_LISTS))

_POD_STATUS = {
    "conditions": keyed("type"),
    "podIPs": keyed("ip"),
    "hostIPs": keyed_in_patch_only("ip"),
    "resourceClaimStatuses": keyed("name"),
    "volumeHealth": keyed_in_apply_only("name"),
}

_CONDITIONS = {"status.conditions": keyed("type")}
_POD_TEMPLATE_ZERO = {"metadata": {}, "spec": {"containers": None}}


def _kind(
    lists: Mapping[str, ListRule] | None = None,
    atomic: frozenset[str] = frozenset(),
    *,
    template: str | None = None,
    zero: Mapping[str, Any] | None = None,
) -> KindSchema:
    """A kind's schema: metadata everywhere, plus the pod template at `template` if any."""
    all_lists = {**_under("metadata", _META), **(lists or {})}
    all_atomic = _under_all("metadata", _META_ATOMIC) | atomic
    if template is not None:
        all_lists.update(_under(f"{template}.metadata", _META))
        all_lists.update(_under(f"{template}.spec", _POD_SPEC))
        all_atomic |= _under_all(f"{template}.spec", _POD_SPEC_ATOMIC)
        all_atomic |= _under_all(f"{template}.metadata", _META_ATOMIC)
    return KindSchema(MappingProxyType(all_lists), all_atomic, MappingProxyType(dict(zero or {})))


def _workload_zero(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"spec": {"selector": None, "template": _POD_TEMPLATE_ZERO, **spec}, "status": status}


_SELECTOR = frozenset({"spec.selector"})
_DAEMON_SET_STATUS = dict.fromkeys(
    ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"), 0
)

KINDS: Mapping[str, KindSchema] = MappingProxyType(
    {
        "Pod": _kind(
            {**_under("spec", _POD_SPEC), **_under("status", _POD_STATUS)},
            _under_all("spec", _POD_SPEC_ATOMIC),
            zero={"metadata": {}, "spec": {"containers": None}, "status": {}},
        ),
        "PodTemplate": _kind(template="template", zero={"template": _POD_TEMPLATE_ZERO}),
        "ReplicationController": _kind(
            _CONDITIONS, _SELECTOR, template="spec.template", zero={"spec": {}, "status": {}}
        ),
        "Service": _kind(
            {"spec.ports": keyed("port", "protocol"), **_CONDITIONS},
            _SELECTOR,
            zero={"spec": {}, "status": {"loadBalancer": {}}},
        ),
        "Endpoints": _kind(),
        "ConfigMap": _kind(),
        "Secret": _kind(),
        "ServiceAccount": _kind({"secrets": keyed("name")}, frozenset({"secrets"})),
        "Node": _kind(
            {
                "spec.podCIDRs": primitive_set(),
                "status.conditions": keyed("type"),
                "status.addresses": keyed("type"),
            },
            zero={"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}},
        ),
        "Namespace": _kind(_CONDITIONS, zero={"spec": {}, "status": {}}),
        "Event": _kind(
            zero={
                "involvedObject": {},
                "source": {},
                "firstTimestamp": None,
                "lastTimestamp": None,
                "eventTime": None,
                "reportingComponent": "",
                "reportingInstance": "",
            }
        ),
        "PersistentVolume": _kind(zero={"spec": {}, "status": {}}),
        "PersistentVolumeClaim": _kind(
            {
                "status.conditions": keyed("type"),
                "spec.resources.claims": keyed_in_apply_only("name"),
            },
            zero={"spec": {"resources": {}}, "status": {}},
        ),
        "LimitRange": _kind(zero={"spec": {"limits": None}}),
        "ResourceQuota": _kind(zero={"spec": {}, "status": {}}),
        "autoscaling/Scale": _kind(zero={"spec": {}, "status": {}}),  # the scale subresource
        "apps/Deployment": _kind(
            _CONDITIONS, _SELECTOR, template="spec.template", zero=_workload_zero({}, strategy={})
        ),
        "apps/ReplicaSet": _kind(
            _CONDITIONS, _SELECTOR, template="spec.template", zero=_workload_zero({"replicas": 0})
        ),
        "apps/DaemonSet": _kind(
            _CONDITIONS,
            _SELECTOR,
            template="spec.template",
            zero=_workload_zero(_DAEMON_SET_STATUS, updateStrategy={}),
        ),
        "apps/StatefulSet": _kind(
            _CONDITIONS,
            _SELECTOR,
            template="spec.template",
            zero=_workload_zero(
                {"replicas": 0, "availableReplicas": 0}, serviceName="", updateStrategy={}
            ),
        ),
        "apps/ControllerRevision": _kind(),
        "batch/Job": _kind(
            {"status.conditions": keyed_in_patch_only("type")},
            _SELECTOR,
            template="spec.template",
            zero={"spec": {"template": _POD_TEMPLATE_ZERO}, "status": {}},
        ),
        "batch/CronJob": _kind(
            atomic=frozenset({"spec.jobTemplate.spec.selector"}),
            template="spec.jobTemplate.spec.template",
            zero={
                "spec": {
                    "schedule": "",
                    "jobTemplate": {"metadata": {}, "spec": {"template": _POD_TEMPLATE_ZERO}},
                },
                "status": {},
            },
        ),
        "coordination.k8s.io/Lease": _kind(zero={"spec": {}}),
        "discovery.k8s.io/EndpointSlice": _kind(
            zero={"addressType": "", "endpoints": None, "ports": None}
        ),
        "events.k8s.io/Event": _kind(),
        "policy/PodDisruptionBudget": _kind(_CONDITIONS, zero={"spec": {}, "status": {}}),
        "autoscaling/HorizontalPodAutoscaler": _kind(_CONDITIONS, zero={"spec": {}, "status": {}}),
        "networking.k8s.io/NetworkPolicy": _kind(zero={"spec": {"podSelector": {}}}),
        "networking.k8s.io/Ingress": _kind(zero={"spec": {}, "status": {}}),
        "networking.k8s.io/IngressClass": _kind(zero={"spec": {}}),
        "rbac.authorization.k8s.io/Role": _kind(),
        "rbac.authorization.k8s.io/ClusterRole": _kind(),
        "rbac.authorization.k8s.io/RoleBinding": _kind(zero={"roleRef": {}}),
        "rbac.authorization.k8s.io/ClusterRoleBinding": _kind(zero={"roleRef": {}}),
        "storage.k8s.io/StorageClass": _kind(),
        "storage.k8s.io/CSIDriver": _kind(zero={"spec": {}}),
        "scheduling.k8s.io/PriorityClass": _kind(),
        "apiextensions.k8s.io/CustomResourceDefinition": _kind(
            {"status.conditions": keyed("type")}, zero={"spec": {}, "status": {}}
        ),
        "admissionregistration.k8s.io/MutatingWebhookConfiguration": _kind(
            {"webhooks": keyed("name"), "webhooks.matchConditions": keyed("name")}
        ),
        "admissionregistration.k8s.io/ValidatingWebhookConfiguration": _kind(
            {"webhooks": keyed("name"), "webhooks.matchConditions": keyed("name")}
        ),
    }
)


def kind_key(api_version: str, kind: str) -> str:
    """`apps/Deployment` for apps/v1 Deployment, `Pod` for v1 Pod: the key of `KINDS`."""
    group = api_version.rpartition("/")[0]
    return f"{group}/{kind}" if group else kind


def kind_key_of(obj: Mapping[str, Any]) -> str:
    return kind_key(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))


def schema_for(key: str) -> KindSchema | None:
    """The kind's schema, or None for a kind this table does not know (a custom resource)."""
    return KINDS.get(key)
