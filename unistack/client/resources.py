"""Which resource a request is about: `ResourceRef`, the built-in kinds, and discovery.

A `ResourceRef` is what the client needs to build a URL (group, version, plural, scope) plus
the kind, for objects it creates. The constants name the built-in kinds controllers use; any
other kind (custom resources) is found with `resolve`, which reads the API's discovery
documents (`/api/v1`, `/apis/{group}/{version}`), or `discover`, which lists every resource
the server serves in its preferred versions (the garbage collector and namespace controller
use it). `unistack.client.api.Client` does the HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unistack.client.api import Client


@dataclass(frozen=True, slots=True)
class ResourceRef:
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection (no name) or of one object or its subresource."""
        path = self.group_version_path
        if self.namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        if name is not None:
            path += f"/{name}"
            if subresource:
                path += f"/{subresource}"
        return path

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass(frozen=True, slots=True)
class DiscoveredResource:
    """A resource as discovery reports it: its reference and the verbs it allows."""

    ref: ResourceRef
    verbs: frozenset[str]

    def allows(self, *verbs: str) -> bool:
        return all(verb in self.verbs for verb in verbs)


NAMESPACES = ResourceRef("", "v1", "namespaces", False, "Namespace")
NODES = ResourceRef("", "v1", "nodes", False, "Node")
PODS = ResourceRef("", "v1", "pods", True, "Pod")
SERVICES = ResourceRef("", "v1", "services", True, "Service")
ENDPOINTS = ResourceRef("", "v1", "endpoints", True, "Endpoints")
CONFIGMAPS = ResourceRef("", "v1", "configmaps", True, "ConfigMap")
SECRETS = ResourceRef("", "v1", "secrets", True, "Secret")
SERVICEACCOUNTS = ResourceRef("", "v1", "serviceaccounts", True, "ServiceAccount")
EVENTS = ResourceRef("", "v1", "events", True, "Event")
PERSISTENTVOLUMES = ResourceRef("", "v1", "persistentvolumes", False, "PersistentVolume")
PERSISTENTVOLUMECLAIMS = ResourceRef(
    "", "v1", "persistentvolumeclaims", True, "PersistentVolumeClaim"
)
DEPLOYMENTS = ResourceRef("apps", "v1", "deployments", True, "Deployment")
REPLICASETS = ResourceRef("apps", "v1", "replicasets", True, "ReplicaSet")
DAEMONSETS = ResourceRef("apps", "v1", "daemonsets", True, "DaemonSet")
STATEFULSETS = ResourceRef("apps", "v1", "statefulsets", True, "StatefulSet")
JOBS = ResourceRef("batch", "v1", "jobs", True, "Job")
LEASES = ResourceRef("coordination.k8s.io", "v1", "leases", True, "Lease")
ENDPOINTSLICES = ResourceRef("discovery.k8s.io", "v1", "endpointslices", True, "EndpointSlice")
STORAGECLASSES = ResourceRef("storage.k8s.io", "v1", "storageclasses", False, "StorageClass")
CLUSTERROLES = ResourceRef("rbac.authorization.k8s.io", "v1", "clusterroles", False, "ClusterRole")
CLUSTERROLEBINDINGS = ResourceRef(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False, "ClusterRoleBinding"
)
CUSTOMRESOURCEDEFINITIONS = ResourceRef(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition"
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> ("apps", "v1"); `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def group_version_path(api_version: str) -> str:
    group, version = split_api_version(api_version)
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def parse_resource_list(document: dict[str, Any]) -> list[DiscoveredResource]:
    """The top-level resources (no subresources) of an APIResourceList document."""
    group, version = split_api_version(document.get("groupVersion", "v1"))
    found = []
    for entry in document.get("resources", []):
        if "/" in entry["name"]:
            continue
        ref = ResourceRef(
            entry.get("group") or group,
            entry.get("version") or version,
            entry["name"],
            bool(entry.get("namespaced")),
            entry["kind"],
        )
        found.append(DiscoveredResource(ref, frozenset(entry.get("verbs", []))))
    return found


async def resources_of(client: Client, api_version: str) -> list[DiscoveredResource]:
    """The resources served in one group version."""
    return parse_resource_list(await client.get_path(group_version_path(api_version)))


async def resolve(client: Client, api_version: str, kind: str) -> ResourceRef:
    """The resource serving `kind` in `api_version`; raises `NotFound` when none does."""
    for resource in await resources_of(client, api_version):
        if resource.ref.kind == kind:
            return resource.ref
    from unistack.client.api import NotFound

    raise NotFound(404, "NotFound", {"message": f"no resource for {api_version} {kind}"})


async def preferred_group_versions(client: Client) -> list[str]:
    """Every group's preferred version, the core `v1` first."""
    core = await client.get_path("/api")
    versions = list(core.get("versions", ["v1"]))[:1]
    groups = await client.get_path("/apis")
    for group in groups.get("groups", []):
        preferred = group.get("preferredVersion") or group["versions"][0]
        versions.append(preferred["groupVersion"])
    return versions


async def discover(client: Client) -> list[DiscoveredResource]:
    """Every resource the server serves, in its group's preferred version.

    A group version that vanishes between `/apis` and its own document (a CRD being deleted)
    is skipped; any other failure raises.
    """
    from unistack.client.api import NotFound

    found: list[DiscoveredResource] = []
    for api_version in await preferred_group_versions(client):
        try:
            found.extend(await resources_of(client, api_version))
        except NotFound:
            continue
    return found
