"""Discovery documents: what `/api`, `/apis`, `/apis/<group>` and `/api/v1` answer.

Clients learn the served kinds here before anything else: `kubectl` asks `/api` and `/apis` for
aggregated discovery (`apidiscovery.k8s.io/v2`, one document listing every group, version and
resource) and falls back to the legacy documents (`APIVersions`, `APIGroupList`, `APIGroup`,
`APIResourceList`). Every document is built from the `resources.Registry` and cached until the
registry's generation changes; `app` serialises them and `negotiate` picks the format from the
Accept header. `openapi` reuses `SUBRESOURCES` to describe the same subresources as paths.

Documents returned here are shared between requests: callers must not modify them.
"""

from __future__ import annotations

import base64
import hashlib
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from unistack.apiserver.resources import Registry, ResourceType

Doc = dict[str, Any]
T = TypeVar("T")

DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_KIND = "APIGroupDiscoveryList"
DISCOVERY_VERSIONS = ("v2", "v2beta1")  # most preferred first


@dataclass(frozen=True, slots=True)
class Subresource:
    """What a subresource answers with and which verbs it allows.

    `kind` is formatted with the parent's kind (`{kind}ProxyOptions` → `PodProxyOptions`);
    an empty group and version mean the parent's group-version.
    """

    verbs: tuple[str, ...]
    kind: str = "{kind}"
    group: str = ""
    version: str = ""
    connect: bool = False  # a streaming endpoint (exec, attach, ...), not an object

    def response_kind(self, parent: ResourceType) -> str:
        return self.kind.format(kind=parent.kind)


_READ_WRITE = ("get", "patch", "update")

SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource(_READ_WRITE),
    "scale": Subresource(_READ_WRITE, "Scale", "autoscaling", "v1"),
    "finalize": Subresource(("update",)),
    "approval": Subresource(_READ_WRITE),
    "ephemeralcontainers": Subresource(_READ_WRITE),
    "resize": Subresource(_READ_WRITE),
    "log": Subresource(("get",)),
    "binding": Subresource(("create",), "Binding"),
    "eviction": Subresource(("create",), "Eviction", "policy", "v1"),
    "token": Subresource(("create",), "TokenRequest", "authentication.k8s.io", "v1"),
    "exec": Subresource(("create", "get"), "PodExecOptions", connect=True),
    "attach": Subresource(("create", "get"), "PodAttachOptions", connect=True),
    "portforward": Subresource(("create", "get"), "PodPortForwardOptions", connect=True),
    "proxy": Subresource(
        ("create", "delete", "get", "patch", "update"), "{kind}ProxyOptions", connect=True
    ),
}
_UNKNOWN_SUBRESOURCE = Subresource(("get",))


def subresource(name: str) -> Subresource:
    return SUBRESOURCES.get(name, _UNKNOWN_SUBRESOURCE)


class GenerationCache:
    """Values computed from a registry, kept until the registry's generation changes."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[Registry, tuple[int, dict[Hashable, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, registry: Registry, key: Hashable, build: Callable[[], T]) -> T:
        generation, values = self._entries.get(registry, (-1, {}))
        if generation != registry.generation:
            values = {}
            self._entries[registry] = (registry.generation, values)
        if key not in values:
            values[key] = build()
        value: T = values[key]
        return value


_cache = GenerationCache()


# -- legacy discovery -------------------------------------------------------------------------


def core_versions(server_address: str) -> Doc:
    """`/api`: the versions of the core group (`APIVersions`)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address},
        ],
    }


def group_list(registry: Registry) -> Doc:
    """`/apis`: every named group (`APIGroupList`); the core group is at `/api`."""
    return _cache.get(registry, "groups", lambda: _group_list(registry))


def _group_list(registry: Registry) -> Doc:
    groups = [_group_entry(registry, name) for name in registry.groups() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> Doc | None:
    """`/apis/<group>`: one group and its versions (`APIGroup`), None if not served."""
    if not name or name not in registry.groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(registry, name)}


def _group_entry(registry: Registry, name: str) -> Doc:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in registry.versions(name)]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def resource_list(registry: Registry, group: str, version: str) -> Doc | None:
    """`/api/v1`, `/apis/<g>/<v>`: the resources of a group-version (`APIResourceList`)."""
    key = ("resources", group, version)
    return _cache.get(registry, key, lambda: _resource_list(registry, group, version))


def _resource_list(registry: Registry, group: str, version: str) -> Doc | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": api_resources(registry, types),
    }


def api_resources(registry: Registry, types: list[ResourceType]) -> list[Doc]:
    """`APIResource` entries for `types` and their subresources, sorted by name."""
    entries: list[Doc] = []
    for rt in types:
        entries.append(_resource_entry(registry, rt))
        entries.extend(_subresource_entry(rt, name) for name in rt.subresources)
    return sorted(entries, key=lambda entry: entry["name"])


def _resource_entry(registry: Registry, rt: ResourceType) -> Doc:
    entry: Doc = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entry["storageVersionHash"] = storage_version_hash(registry, rt)
    return entry


def _subresource_entry(parent: ResourceType, name: str) -> Doc:
    sub = subresource(name)
    entry: Doc = {
        "name": f"{parent.plural}/{name}",
        "singularName": "",
        "namespaced": parent.namespaced,
    }
    if sub.group or sub.version:
        entry["group"] = sub.group
        entry["version"] = sub.version
    entry["kind"] = sub.response_kind(parent)
    entry["verbs"] = list(sub.verbs)
    return entry


def storage_version_hash(registry: Registry, rt: ResourceType) -> str:
    """A stable digest of the version objects of this resource are stored in."""
    stored = [t for t in registry.versions_of(rt.group, rt.plural) if t.storage_version]
    version = stored[0].version if stored else rt.version
    digest = hashlib.sha256(f"{rt.group}/{version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


# -- aggregated discovery ---------------------------------------------------------------------


def negotiate(accept_header: str) -> tuple[str, str] | None:
    """Pick aggregated discovery from an Accept header.

    Returns (apidiscovery version, the Content-Type to answer with), or None when the client
    prefers (or only accepts) the legacy documents. Clauses are taken by quality, then in the
    client's order; protobuf and unknown versions are skipped.
    """
    for media_type, params in _accept_clauses(accept_header):
        if media_type not in ("application/json", "application/*", "*/*"):
            continue
        if "g" not in params and "as" not in params and "v" not in params:
            return None
        wanted = params.get("g") == DISCOVERY_GROUP and params.get("as") == DISCOVERY_KIND
        if wanted and params.get("v") in DISCOVERY_VERSIONS:
            return params["v"], aggregated_content_type(params["v"])
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g={DISCOVERY_GROUP};v={version};as={DISCOVERY_KIND}"


def _accept_clauses(header: str) -> list[tuple[str, dict[str, str]]]:
    clauses: list[tuple[float, int, str, dict[str, str]]] = []
    for index, clause in enumerate(header.split(",")):
        media_type, *raw_params = (part.strip() for part in clause.split(";"))
        params = dict(_param(p) for p in raw_params if "=" in p)
        quality = _quality(params.pop("q", "1"))
        if media_type and quality > 0:
            clauses.append((-quality, index, media_type.lower(), params))
    return [(media_type, params) for _, _, media_type, params in sorted(clauses)]


def _param(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.strip().lower(), value.strip().strip('"')


def _quality(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def aggregated(registry: Registry, core: bool, version: str) -> Doc:
    """`/api` (core) or `/apis` as an `APIGroupDiscoveryList` of apidiscovery `version`."""
    key = ("aggregated", core, version)
    return _cache.get(registry, key, lambda: _aggregated(registry, core, version))


def _aggregated(registry: Registry, core: bool, version: str) -> Doc:
    names = [""] if core else [name for name in registry.groups() if name]
    return {
        "kind": DISCOVERY_KIND,
        "apiVersion": f"{DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": [_group_discovery(registry, name) for name in names if registry.in_group(name)],
    }


def _group_discovery(registry: Registry, name: str) -> Doc:
    metadata: Doc = (
        {"name": name, "creationTimestamp": None} if name else {"creationTimestamp": None}
    )
    versions = [
        {
            "version": version,
            "resources": _resources_discovery(registry, name, version),
            "freshness": "Current",
        }
        for version in registry.versions(name)
    ]
    return {"metadata": metadata, "versions": versions}


def _resources_discovery(registry: Registry, group: str, version: str) -> list[Doc]:
    """The resources of one group-version, each with its subresources nested."""
    resources = []
    for rt in sorted(registry.in_group_version(group, version), key=lambda rt: rt.plural):
        resource = _resource_discovery(_resource_entry(registry, rt))
        subresources = [_subresource_discovery(rt, name) for name in sorted(rt.subresources)]
        if subresources:
            resource["subresources"] = subresources
        resources.append(resource)
    return resources


def _resource_discovery(entry: Doc) -> Doc:
    resource: Doc = {
        "resource": entry["name"],
        "responseKind": {"group": "", "version": "", "kind": entry["kind"]},
        "scope": "Namespaced" if entry["namespaced"] else "Cluster",
        "singularResource": entry["singularName"],
        "verbs": entry["verbs"],
    }
    for key in ("shortNames", "categories"):
        if key in entry:
            resource[key] = entry[key]
    return resource


def _subresource_discovery(parent: ResourceType, name: str) -> Doc:
    sub = subresource(name)
    kind = {"group": sub.group, "version": sub.version, "kind": sub.response_kind(parent)}
    return {"subresource": name, "responseKind": kind, "verbs": list(sub.verbs)}
