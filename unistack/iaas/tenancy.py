"""One project, one namespace (DESIGN.md section 3).

An OpenStack project is a cluster-scoped `Project`; the VMs, volumes, networks, images and pods
it owns live in namespace `project-<id>`, labelled with the project id, so `kubectl get
servers -n project-<id>` and `openstack server list` in that project show the same objects.
`ensure_namespace` creates it on the first write (idempotent, remembered per process).
"""

from __future__ import annotations

import contextlib

from unistack.client.api import AlreadyExists, Client
from unistack.client.resources import NAMESPACES

PREFIX = "project-"
PROJECT_LABEL = "identity.unistack.io/project-id"
SHARED_NAMESPACE = "openstack-shared"  # objects no project owns (public images, flavors)


def namespace_of(project_id: str | None) -> str:
    """The namespace of a project's resources; objects without a project go to the shared one."""
    if not project_id:
        return SHARED_NAMESPACE
    name = f"{PREFIX}{project_id.lower()}"
    if len(name) > 63 or not all(c.isalnum() or c == "-" for c in name):
        raise ValueError(f"project id {project_id!r} cannot name a namespace")
    return name


class Namespaces:
    """Creates project namespaces on demand, once per process."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._known: set[str] = set()

    async def ensure(self, project_id: str | None) -> str:
        name = namespace_of(project_id)
        if name in self._known:
            return name
        labels = {PROJECT_LABEL: project_id} if project_id else {}
        metadata = {"name": name, "labels": labels}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        with contextlib.suppress(AlreadyExists):
            await self.client.create(NAMESPACES, body)
        self._known.add(name)
        return name
