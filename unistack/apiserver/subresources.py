"""The `scale` subresource: an autoscaling/v1 Scale view of a workload's replicas."""

from __future__ import annotations

import copy
from typing import Any

from unistack.apiserver import errors
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.selectors import selector_to_string

Obj = dict[str, Any]


def _read(obj: Obj, path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _write(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
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
    replicas = scale.get("spec", {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "Scale",
            "autoscaling",
            obj["metadata"]["name"],
            [errors.invalid_field("spec.replicas", replicas, "must be greater than or equal to 0")],
        )
    new = copy.deepcopy(obj)
    _write(new, rt.scale.spec_replicas, replicas)
    return new
