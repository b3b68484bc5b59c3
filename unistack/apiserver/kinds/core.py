"""The core/v1 kinds without a module of their own: Namespace, Node and Event.

Namespaces default to the `kubernetes` finalizer, phase Active and the
`kubernetes.io/metadata.name` label, and are named as DNS labels. Nodes print upstream's
STATUS ("Ready", "NotReady,SchedulingDisabled") and ROLES (from `node-role.kubernetes.io/*`
labels). Events print as `kubectl get events` does, with the name only in wide output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from unistack.apiserver.errors import FieldError, duplicate_field, invalid_field, required_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_enum, check_finalizer, problems_at
from unistack.apiserver.kinds.objects import (
    Obj,
    dict_of,
    dicts_in,
    dig,
    ensure_dict,
    int_of,
    list_of,
    metadata_of,
    set_default,
)
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import label_value_errors, qualified_name_errors

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"
_NODE_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_INVALID_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def default_namespace(namespace: Obj) -> None:
    """Finalizer `kubernetes` unless finalizers were given, phase Active, the name label."""
    spec = ensure_dict(namespace, "spec")
    if spec is not None and spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    status = ensure_dict(namespace, "status")
    if status is not None:
        set_default(status, "phase", "Active")
    name = metadata_of(namespace).get("name")
    if isinstance(name, str) and name:
        labels = ensure_dict(namespace["metadata"], "labels")
        if labels is not None:
            labels["kubernetes.io/metadata.name"] = name


def validate_namespace(namespace: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for finalizer in list_of(dig(namespace, "spec", "finalizers")):
        errs += check_finalizer("spec.finalizers", finalizer)
    phase = dig(namespace, "status", "phase")
    return errs + check_enum("status.phase", phase, ("Active", "Terminating"), required=False)


NAMESPACE = ResourceType(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    singular="namespace",
    namespaced=False,
    short_names=("ns",),
    status_subresource=True,
    columns=(
        Column("Status", cells.text_at("status", "phase"), description="The namespace's phase."),
        cells.AGE_COLUMN,
    ),
    defaulter=default_namespace,
    validator=validate_namespace,
    extra_subresources=("finalize",),
    extra={"name_format": "dns1123label"},
)


def node_status(node: Obj) -> str:
    """ "Ready" / "NotReady" / "Unknown", with ",SchedulingDisabled" when cordoned."""
    status = "Unknown"
    for condition in dicts_in(dig(node, "status", "conditions")):
        if condition.get("type") == "Ready":
            status = "Ready" if condition.get("status") == "True" else "NotReady"
    if dig(node, "spec", "unschedulable") is True:
        status += ",SchedulingDisabled"
    return status


def node_roles(node: Obj) -> str:
    roles: set[str] = set()
    for key, value in dict_of(dig(node, "metadata", "labels")).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX) :]:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or cells.NONE


def _node_address(kind: str) -> Callable[[Obj], str]:
    def cell(node: Obj) -> str:
        for address in dicts_in(dig(node, "status", "addresses")):
            if address.get("type") == kind:
                return str(address.get("address", ""))
        return cells.NONE

    return cell


def _node_info(key: str, description: str, name: str) -> Column:
    cell = cells.text_at("status", "nodeInfo", key, default="<unknown>")
    return Column(name, cell, priority=1, description=description)


NODE_COLUMNS = (
    Column("Status", node_status, description="The status of the node"),
    Column("Roles", node_roles, description="The roles of the node"),
    cells.AGE_COLUMN,
    Column(
        "Version",
        cells.text_at("status", "nodeInfo", "kubeletVersion"),
        description="Kubelet Version reported by the node.",
    ),
    Column("Internal-IP", _node_address("InternalIP"), priority=1, description="Internal IP."),
    Column("External-IP", _node_address("ExternalIP"), priority=1, description="External IP."),
    _node_info("osImage", "OS image reported by the node.", "OS-Image"),
    _node_info("kernelVersion", "Kernel version reported by the node.", "Kernel-Version"),
    _node_info("containerRuntimeVersion", "Container runtime version.", "Container-Runtime"),
)


def default_node(node: Obj) -> None:
    """Allocatable defaults to capacity."""
    status = dict_of(node.get("status"))
    if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def validate_node(node: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(node.get("spec"))
    errs = _check_taints(spec.get("taints"))
    cidrs = list_of(spec.get("podCIDRs")) or [c for c in [spec.get("podCIDR")] if c]
    for i, cidr in enumerate(cidrs):
        if not _is_cidr(cidr):
            errs.append(invalid_field(f"spec.podCIDRs[{i}]", cidr, _INVALID_CIDR))
    return errs


def _is_cidr(value: Any) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return "/" in str(value)


def _check_taints(taints: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(dicts_in(taints)):
        field = f"spec.taints[{i}]"
        key, value = str(taint.get("key") or ""), str(taint.get("value") or "")
        errs += problems_at(f"{field}.key", key, qualified_name_errors(key))
        errs += problems_at(f"{field}.value", value, label_value_errors(value))
        effect = taint.get("effect")
        errs += check_enum(f"{field}.effect", effect, _NODE_TAINT_EFFECTS)
        if (key, str(effect)) in seen:
            errs.append(duplicate_field(field, taint))
        seen.add((key, str(effect)))
    return errs


NODE = ResourceType(
    group="",
    version="v1",
    kind="Node",
    plural="nodes",
    singular="node",
    namespaced=False,
    short_names=("no",),
    status_subresource=True,
    status_on_create=True,
    extra_subresources=("proxy",),  # nodeproxy.py: requests relayed to the node's agent
    columns=NODE_COLUMNS,
    defaulter=default_node,
    validator=validate_node,
)


def _event_first_seen(event: Obj) -> Any:
    return event.get("firstTimestamp") or event.get("eventTime")


def _event_last_seen(event: Obj) -> Any:
    series_time = dig(event, "series", "lastObservedTime")
    return series_time or event.get("lastTimestamp") or _event_first_seen(event)


def _event_count(event: Obj) -> int:
    series = event.get("series")
    if isinstance(series, dict):
        return int_of(series.get("count"))
    return int_of(event.get("count")) or 1


def _event_object(event: Obj) -> str:
    involved = dict_of(event.get("involvedObject"))
    kind, name = str(involved.get("kind", "")).lower(), involved.get("name")
    return f"{kind}/{name}" if name else kind


def _event_source(event: Obj) -> str:
    component = dig(event, "source", "component") or event.get("reportingComponent") or ""
    host = dig(event, "source", "host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else str(component)


EVENT_COLUMNS = (
    Column(
        "Last Seen",
        lambda event: cells.age_of(_event_last_seen(event)),
        description="How long ago the event was last observed.",
    ),
    Column("Type", cells.text_at("type"), description="Normal or Warning."),
    Column("Reason", cells.text_at("reason"), description="Why the event happened."),
    Column("Object", _event_object, description="The object the event is about."),
    Column(
        "Subobject",
        cells.text_at("involvedObject", "fieldPath"),
        priority=1,
        description="The part of the object the event is about.",
    ),
    Column("Source", _event_source, priority=1, description="The component reporting it."),
    Column(
        "Message",
        lambda event: str(event.get("message") or "").strip(),
        description="A human-readable description.",
    ),
    Column("First Seen", _event_first_seen, type="date", priority=1, description="First observed."),
    Column("Count", _event_count, priority=1, description="How many times it occurred."),
    Column(
        "Name", cells.text_at("metadata", "name"), format="name", priority=1, description="Name."
    ),
)


def validate_event(event: Obj, old: Obj | None) -> list[FieldError]:
    """The involved object lives in the event's namespace (or, cluster-scoped, in default)."""
    involved = event.get("involvedObject")
    if not isinstance(involved, dict):
        return [required_field("involvedObject")]
    namespace = metadata_of(event).get("namespace") or ""
    involved_ns = involved.get("namespace") or ""
    if involved_ns == namespace or (not involved_ns and namespace in ("", "default")):
        return []
    return [
        invalid_field("involvedObject.namespace", involved_ns, "does not match event.namespace")
    ]


EVENT = ResourceType(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    singular="event",
    namespaced=True,
    short_names=("ev",),
    columns=EVENT_COLUMNS,
    validator=validate_event,
    extra={"name_column": False},
)
