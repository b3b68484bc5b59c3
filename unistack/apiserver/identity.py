"""Where an object says it lives must be where the request addresses it.

A body's kind and apiVersion must be the endpoint's, its namespace the URL's (filled in when
absent, dropped for cluster-scoped kinds), and for PUT, patch and apply its name the URL's —
kube-apiserver's checkName. Each mismatch is a 400 (a missing namespace is a 404).
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver import codec, errors
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.routing import ResourcePath

Obj = dict[str, Any]


def check_identity(rt: ResourceType, obj: Obj, rp: ResourcePath) -> None:
    """A PUT body, a patched object or an applied one must be the object the URL names:
    the endpoint's kind and apiVersion, its namespace and its name (kube's checkName)."""
    codec.check_type(rt, obj)
    check_namespace(rt, obj, rp.namespace)
    name = obj["metadata"].get("name")
    if name != rp.name:
        raise errors.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({rp.name})"
        )


def check_namespace(rt: ResourceType, obj: Obj, namespace: str | None) -> None:
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if not rt.namespaced:
        meta.pop("namespace", None)
        return
    given = meta.get("namespace")
    if given and namespace and given != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if namespace is None:
        raise errors.not_found(rt.plural, rt.group, meta.get("name", ""))
    meta["namespace"] = namespace
