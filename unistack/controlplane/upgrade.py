"""Planning an upgrade of the control plane: its steps in order, their impact, and an
estimate of their duration computed from the live cluster.

An upgrade sets the ControlPlane's `spec.release`; the operator then rolls the services one
at a time in `presets.SERVICES` order (`operator.rollout`), each a rolling update that keeps
every replica until its replacement is Ready (maxSurge 1, maxUnavailable 0). So a step takes
about `replicas` x (the time one replica takes to be replaced) plus the operator's
hand-over. That time comes from history: the last completed upgrade's step for the service
(its seconds per replica, recorded by the operator in the ControlPlane's status), else the
service's current pods from creation to Ready, else `DEFAULT_READY`.

A rolling update starts one pod at a time, but the pods of a first start all came up at
once, and a pod's start (Python's imports, the informers' lists) is bound by CPU: k pods
starting together on a node of c cores each took about k/c times as long as one alone. So
each pod's time counts as its creation-to-Ready time scaled by c/k (never more than the
time itself), k being the control-plane pods of its node whose starts overlapped its own
(each for the share of its start it overlapped), and the quickest of the service's pods is
taken. On the 2-core machine a fresh cluster's first upgrade took 60 s: the unscaled quickest
pods estimated it at 145 s, the scaled ones at 63.6 s. Pure: `plan` takes the objects, the
CLI (`cli.upgrade`) fetches and applies.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from unistack.controlplane import presets, render
from unistack.kube.scheduler import resources

Obj = dict[str, Any]
DEFAULT_READY = 5.0  # seconds for a pod to become Ready, when no pod says otherwise
HANDOVER = 1.0  # seconds between one service's last replica and the next service's first


@dataclass(frozen=True)
class Step:
    service: str
    replicas: int
    ready_seconds: float  # one new pod, creation to Ready
    measured: bool  # from this cluster's pods, or the default
    estimate: float
    impact: str
    deployment: str


def _time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Start:
    """A Ready pod's start: created and Ready (seconds since the epoch), on `node`."""

    name: str
    node: str
    created: float
    ready: float

    @property
    def seconds(self) -> float:
        return max(self.ready - self.created, 0.0)

    def overlap(self, other: Start) -> float:
        """Seconds both were starting on the same node."""
        if self.node != other.node:
            return 0.0
        return max(min(self.ready, other.ready) - max(self.created, other.created), 0.0)


def start_of(pod: Obj) -> Start | None:
    """When a Ready pod was created and became Ready; None for one that is not Ready."""
    created = pod["metadata"].get("creationTimestamp")
    for condition in (pod.get("status") or {}).get("conditions") or []:
        ready = condition.get("type") == "Ready" and condition.get("status") == "True"
        if ready and created and condition.get("lastTransitionTime"):
            node = str((pod.get("spec") or {}).get("nodeName") or "")
            name = str(pod["metadata"].get("name", ""))
            return Start(name, node, _time(created), _time(condition["lastTransitionTime"]))
    return None


def cores_of(nodes: Iterable[Obj]) -> dict[str, float]:
    """Each node's allocatable CPU cores, by name, as the scheduler counts them."""
    return {
        node["metadata"]["name"]: resources.allocatable(node).get(resources.CPU, 0) / 1000
        for node in nodes
    }


def alone_seconds(start: Start, starts: Iterable[Start], cores: Mapping[str, float]) -> float:
    """About how long the pod would have taken to start alone: its time scaled by c/k (c
    its node's cores, k the pods of `starts` on that node starting while it did, itself
    included, each counted for the part of its start it shared), never more than its time."""
    if start.seconds <= 0:
        return 0.0
    shared = sum(start.overlap(other) for other in starts if other.name != start.name)
    together = 1.0 + shared / start.seconds
    return start.seconds * min(cores.get(start.node, 1.0) / together, 1.0)


def impact(replicas: int, component: str = presets.API) -> str:
    if component == presets.CONTROLLERS:
        if replicas >= 2:
            return "none (the standby takes the leases over)"
        return "controllers pause while one restarts"
    if component in (presets.GATEWAY, presets.REGISTRY):  # old and new share the node's port
        return "none (old and new replicas share the port)"
    if component == presets.DNS:
        if replicas >= 2:
            return "none (the other replica answers)"
        return "DNS blips (one replica)"
    if replicas >= 2:
        return "none (rolling; the gateway retries)"
    return "API blips (one replica)"


def per_replica(history: Obj | None, service: str) -> float | None:
    """Seconds per replica of `service`'s step in the last completed upgrade, if any."""
    if not history or history.get("phase") != "Complete":
        return None
    step = (history.get("steps") or {}).get(service) or {}
    if "seconds" not in step or not step.get("replicas"):
        return None
    return max(float(step["seconds"]) - HANDOVER, 0.0) / int(step["replicas"])


def plan(
    deployments: dict[str, Obj],
    pods: list[Obj],
    history: Obj | None = None,
    cores: Mapping[str, float] | None = None,
) -> list[Step]:
    """The steps of an upgrade, in order, from the Deployments (by name), the control
    plane's pods, the last upgrade's record (the ControlPlane's `status.upgrade`) and each
    node's CPU cores (by node name; 1 where not given)."""
    starts = {
        str(pod["metadata"].get("name", "")): start
        for pod in pods
        if (start := start_of(pod)) is not None
    }
    steps = []
    for service in presets.SERVICES:
        deployment = deployments.get(service.deployment)
        replicas = int((deployment or {}).get("spec", {}).get("replicas", 1))
        selector = render.selector(service)
        own = [starts[name] for p in pods if (name := p["metadata"].get("name")) in starts
               and _matches(p, selector)]  # fmt: skip
        measured = [alone_seconds(start, starts.values(), cores or {}) for start in own]
        ready = per_replica(history, service.name)
        known = ready is not None or bool(measured)
        if ready is None:  # a pod's start, and the wait before it counts as available
            ready = (min(measured) if measured else DEFAULT_READY) + render.MIN_READY_SECONDS
        estimate = max(replicas, 1) * ready + HANDOVER
        steps.append(
            Step(
                service.name,
                replicas,
                ready,
                known,
                estimate,
                impact(replicas, service.component),
                service.deployment,
            )
        )
    return steps


def _matches(pod: Obj, selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def total(steps: Iterable[Step]) -> float:
    return sum(step.estimate for step in steps)
