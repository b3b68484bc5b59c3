"""What a pod's containers read from the API: the ConfigMaps and Secrets its volumes and
environment name, the Services whose variables every container gets (the API server's
`kubernetes`, and those of the pod's namespace unless `enableServiceLinks` is off), and the
paths of the PersistentVolumes its claims are bound to.

`referenced` finds the names (pure); `fetch` reads them (a missing one is simply absent, so
`containerspec` and `volumes` can tell optional from required); `claim_paths` resolves each
bound claim to its volume's `hostPath` or `local` path. They are read when a container
starts, so a restarted container sees current data. Service-account tokens are not read
here but held by the worker (`podtokens`), since they are renewed while containers run.
"""

from __future__ import annotations

import contextlib
from typing import Any

from unistack import podrefs
from unistack.agent import containerspec
from unistack.agent.containerspec import Sources
from unistack.client.api import Client, NotFound
from unistack.client.resources import (
    CONFIGMAPS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    SECRETS,
    SERVICES,
)

Obj = dict[str, Any]


def referenced(pod: Obj) -> tuple[set[str], set[str]]:
    """The ConfigMap and Secret names the pod's volumes, env, envFrom and image pulls name."""
    found = podrefs.references(pod)
    return found.config_maps, found.secrets


async def fetch(client: Client, pod: Obj, pod_ip: str, host_ip: str) -> Sources:
    namespace = pod["metadata"].get("namespace")
    maps, secrets = referenced(pod)
    config_maps: dict[str, dict[str, str]] = {}
    secret_data: dict[str, dict[str, str]] = {}
    for name in maps:
        with contextlib.suppress(NotFound):
            found = await client.get(CONFIGMAPS, name, namespace)
            config_maps[name] = dict(found.get("data") or {})
    for name in secrets:
        with contextlib.suppress(NotFound):
            found = await client.get(SECRETS, name, namespace)
            secret_data[name] = containerspec.secret_data(found)
    service_env = await service_variables(client, pod)
    return Sources(config_maps, secret_data, pod_ip, host_ip, service_env=service_env)


async def service_variables(client: Client, pod: Obj) -> dict[str, str]:
    """The Services' variables the kubelet gives each of the pod's containers: the API
    server's, and with `enableServiceLinks` (the default) every Service of its namespace's."""
    namespace = str(pod["metadata"].get("namespace") or "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    services: list[Obj] = []
    with contextlib.suppress(NotFound):
        api_server = (containerspec.API_SERVICE, containerspec.API_SERVICE_NAMESPACE)
        services.append(await client.get(SERVICES, *api_server))
    if links:
        services += (await client.list_all(SERVICES, namespace))["items"]
    return containerspec.service_links(services, namespace, links)


async def claim_paths(client: Client, pod: Obj) -> dict[str, str]:
    """Claim name -> host path, for the pod's claims that are bound."""
    namespace = pod["metadata"].get("namespace")
    paths: dict[str, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        try:
            pvc = await client.get(PERSISTENTVOLUMECLAIMS, claim, namespace)
            volume_name = (pvc.get("spec") or {}).get("volumeName")
            if not volume_name or (pvc.get("status") or {}).get("phase") != "Bound":
                continue
            pv = await client.get(PERSISTENTVOLUMES, volume_name)
        except NotFound:
            continue
        source = pv.get("spec") or {}
        path = (source.get("hostPath") or source.get("local") or {}).get("path")
        if path:
            paths[claim] = path
    return paths
