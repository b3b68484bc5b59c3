"""What a pod names of other objects in its namespace: the ConfigMaps and Secrets its volumes,
environment and image pulls read, and the PersistentVolumeClaims its volumes mount.

Two sides need the same answer: the node agent reads these objects when it starts the
pod's containers (`unistack.agent.podsources`), and the API server lets a node read only
the objects a pod bound to it names (`unistack.apiserver.noderestriction`, as upstream's
Node authorizer builds its graph from the same fields). Pure, so it sits below both layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# The resources whose names a pod that refers to one holds as they are, so a pod whose stored
# bytes lack a name cannot refer to that object. Not claims: an ephemeral volume's is named
# `<pod>-<volume>`, which the pod never spells out.
SPELLED_OUT = frozenset({"secrets", "configmaps"})


@dataclass
class PodReferences:
    config_maps: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    claims: set[str] = field(default_factory=set)

    def named(self, resource: str) -> set[str]:
        """The names of the objects of `resource` (a core plural: `secrets`,
        `configmaps`, `persistentvolumeclaims`) the pod refers to."""
        by_resource = {
            "secrets": self.secrets,
            "configmaps": self.config_maps,
            "persistentvolumeclaims": self.claims,
        }
        return by_resource.get(resource, set())


def references(pod: Obj) -> PodReferences:
    """The names `pod` refers to (an empty name, from a malformed reference, is kept out)."""
    spec = pod.get("spec") or {}
    found = PodReferences()
    maps, secrets = found.config_maps, found.secrets
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            maps.add((volume["configMap"] or {}).get("name", ""))
        if "secret" in volume:
            secrets.add((volume["secret"] or {}).get("secretName", ""))
        if "persistentVolumeClaim" in volume:
            found.claims.add((volume["persistentVolumeClaim"] or {}).get("claimName", ""))
        if "ephemeral" in volume:  # its claim is named after the pod and the volume
            pod_name = (pod.get("metadata") or {}).get("name", "")
            found.claims.add(f"{pod_name}-{volume.get('name', '')}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                maps.add((source["configMap"] or {}).get("name", ""))
            if "secret" in source:
                secrets.add((source["secret"] or {}).get("name", ""))
    containers = [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    for container in containers:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                maps.add((source["configMapRef"] or {}).get("name", ""))
            if "secretRef" in source:
                secrets.add((source["secretRef"] or {}).get("name", ""))
        for entry in container.get("env") or []:
            value_from = entry.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                maps.add((value_from["configMapKeyRef"] or {}).get("name", ""))
            if "secretKeyRef" in value_from:
                secrets.add((value_from["secretKeyRef"] or {}).get("name", ""))
    for pull in spec.get("imagePullSecrets") or []:
        secrets.add((pull or {}).get("name", ""))
    for names in (maps, secrets, found.claims):
        names.discard("")
    return found
