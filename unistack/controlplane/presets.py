"""The control plane's services and the size presets that set their replicas and resources.

`SERVICES` lists what the operator runs as Deployments in `unistack-system`, in upgrade order
(identity first, as every other service validates tokens against it; compute after the
APIs it calls; then the rest: cluster DNS, the image registry the nodes pull from, the
gateway in front of the APIs, and the controllers, the Kubernetes controllers, scheduler and
the operator itself, leader elected).
`replicas` and `resources` resolve a service's size from the ControlPlane's `spec.size` and
its per-service override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


API = "api"
DNS = "dns"
REGISTRY = "registry"
GATEWAY = "gateway"
CONTROLLERS = "controllers"


@dataclass(frozen=True)
class ControlPlaneService:
    """One Deployment of the control plane: an OpenStack API behind the gateway, cluster
    DNS, the image registry, the gateway, or the controllers (`component`)."""

    name: str  # the OpenStack service it serves (`serve openstack --services NAME`)
    gateway_paths: tuple[str, ...] = ()  # the DevStack paths the gateway routes to it
    component: str = API

    @property
    def deployment(self) -> str:
        return f"{self.name}-api" if self.component == API else self.name


SERVICES: tuple[ControlPlaneService, ...] = (
    ControlPlaneService("identity", ("/identity",)),
    ControlPlaneService("image", ("/image",)),
    ControlPlaneService("network", ("/network",)),
    ControlPlaneService("volume", ("/volume",)),
    ControlPlaneService("compute", ("/compute",)),
    ControlPlaneService("dns", component=DNS),
    ControlPlaneService("registry", component=REGISTRY),
    ControlPlaneService("gateway", component=GATEWAY),
    ControlPlaneService("controllers", component=CONTROLLERS),
)

# Replicas per API service for each size: `small` and `ha` keep two or three of each, so
# killing one pod fails no request (the gateway retries on another replica).
REPLICAS = {"single": 1, "small": 2, "ha": 3}
# The controllers: one leads, a second stands by to take the lease over when it goes; DNS,
# the registry and the gateway: a second replica answers while one goes.
CONTROLLER_REPLICAS = {"single": 1, "small": 2, "ha": 2}
RESOURCES: Mapping[str, Obj] = {
    "single": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "small": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "1Gi"}},
    "ha": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
}


def _override(spec: Obj, service: ControlPlaneService) -> Obj:
    overrides = spec.get("services") or {}
    chosen = overrides.get(service.name)
    return chosen if isinstance(chosen, dict) else {}


def replicas(spec: Obj, service: ControlPlaneService) -> int:
    override = _override(spec, service).get("replicas")
    if isinstance(override, int) and override >= 0:
        return override
    table = REPLICAS if service.component == API else CONTROLLER_REPLICAS
    return table.get(spec.get("size") or "single", 1)


def resources(spec: Obj, service: ControlPlaneService) -> Obj:
    override = _override(spec, service).get("resources")
    if isinstance(override, dict) and override:
        return override
    return RESOURCES.get(spec.get("size") or "single", RESOURCES["single"])
