"""Turn a request path into what it addresses, as kube-apiserver's RequestInfo does.

`/api/v1/namespaces/default/pods/web/status` → group "", version v1, namespace default,
resource pods, name web, subresource status. Paths that address no resource (discovery,
OpenAPI, health) are `NonResource`; the app routes those itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# Subresources of a Namespace, which look like `/namespaces/<name>/<sub>`.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class ResourcePath:
    group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    legacy_watch: bool = False  # the deprecated /watch/ prefix form
    proxy_path: str = ""  # `nodes/{name}/proxy/<this>`: the path on the node agent

    def verb(self, method: str, watch: bool) -> str:
        if method in ("GET", "HEAD"):
            if self.name is None:
                return "watch" if watch or self.legacy_watch else "list"
            return "watch" if watch or self.legacy_watch else "get"
        if method == "DELETE":
            return "delete" if self.name is not None else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


@dataclass(frozen=True, slots=True)
class GroupVersionPath:
    """`/api/v1` or `/apis/<group>/<version>`: a resource list (discovery)."""

    group: str
    version: str


@dataclass(frozen=True, slots=True)
class GroupPath:
    """`/apis/<group>`: one API group (discovery)."""

    group: str


def parse(path: str) -> ResourcePath | GroupVersionPath | GroupPath | None:
    """Parse an API path; None when the path is not under /api or /apis."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) < 2:
            return None
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 2:
            return GroupPath(parts[1])
        if len(parts) < 3:
            return None
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return GroupVersionPath(group, version)
    return _resource_path(group, version, rest)


def _resource_path(group: str, version: str, rest: list[str]) -> ResourcePath | None:
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
        if not rest:
            return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    proxy_path = ""
    if len(rest) > 3 and rest[2] == "proxy":
        rest, proxy_path = rest[:3], "/".join(rest[3:])
    if len(rest) > 3:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if resource == "namespaces" and namespace is not None and rest[0] == "namespaces":
        namespace = None  # a Namespace itself is cluster-scoped
    return ResourcePath(
        group, version, resource, namespace, name, subresource, legacy_watch, proxy_path
    )
