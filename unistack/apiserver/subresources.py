"""The `scale` subresource: an autoscaling/v1 Scale view of a workload's replicas."""

from __future__ import annotations

import copy
from typing import Any

from unistack.apiserver import errors
from unistack.apiserver.kinds.objects import dig
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.selectors import selector_to_string

Obj = dict[str, Any]


def _read(obj: Obj, path: str) -> Any:
    """The value at a scale path (`.spec.replicas`), or None."""
    return dig(obj, *path.strip(".").split("."))


def _write(obj: Obj, path: str, value: Any) -> None:
    """Set the value at a scale path, making (or replacing) the objects on the way."""
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def to_scale(rt: ResourceType, obj: Obj) -> Obj:
    if rt.scale is None:
        raise errors.not_found(rt.plural, rt.group, obj["metadata"]["name"])
    meta = obj["metadata"]
    status: Obj = {"replicas": _read(obj, rt.scale.status_replicas) or 0}
    selector = _read(obj, rt.scale.label_selector) if rt.scale.label_selector else None
    if isinstance(selector, dict):
        selector = selector_to_string(selector)
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": _read(obj, rt.scale.spec_replicas) or 0},
        "status": status,
    }


def apply_scale(rt: ResourceType, obj: Obj, scale: Obj) -> Obj:
    """`obj` with spec replicas taken from `scale`; a negative count is 422."""
    assert rt.scale is not None
    spec = scale.get("spec", {})
    if not isinstance(spec, dict):
        problem = errors.type_invalid_field("spec", spec, "object")
        raise errors.invalid("Scale", "autoscaling", obj["metadata"]["name"], [problem])
    replicas = spec.get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        problem = errors.invalid_field(
            "spec.replicas", replicas, "must be greater than or equal to 0"
        )
        raise errors.invalid("Scale", "autoscaling", obj["metadata"]["name"], [problem])
    new = copy.deepcopy(obj)
    _write(new, rt.scale.spec_replicas, replicas)
    return new
