"""Planning an upgrade of the control plane: its steps in order, their impact, and an
estimate of their duration computed from the live cluster.

An upgrade sets the ControlPlane's `spec.release`; the operator then rolls the services one
at a time in `presets.SERVICES` order (`operator.rollout`), each a rolling update that keeps
every replica until its replacement is Ready (maxSurge 1, maxUnavailable 0). So a step takes
about `replicas` x (the time one replica takes to be replaced) plus the operator's
hand-over. That time comes from history: the last completed upgrade's step for the service
(its seconds per replica, recorded by the operator in the ControlPlane's status), else the
quickest of the service's current pods from creation to Ready (the pods of a first start
came up all at once, so the quickest is the least contended), else `DEFAULT_READY`. Pure:
`plan` takes the objects, the CLI (`cli.upgrade`) fetches and applies.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unistack.controlplane import presets, render

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


def readiness_seconds(pods: Iterable[Obj]) -> list[float]:
    """How long each Ready pod took from creation to Ready."""
    seconds = []
    for pod in pods:
        created = pod["metadata"].get("creationTimestamp")
        for condition in (pod.get("status") or {}).get("conditions") or []:
            ready = condition.get("type") == "Ready" and condition.get("status") == "True"
            if ready and created and condition.get("lastTransitionTime"):
                seconds.append(max(_time(condition["lastTransitionTime"]) - _time(created), 0.0))
    return seconds


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


def plan(deployments: dict[str, Obj], pods: list[Obj], history: Obj | None = None) -> list[Step]:
    """The steps of an upgrade, in order, from the Deployments (by name), their pods, and
    the last upgrade's record (the ControlPlane's `status.upgrade`)."""
    steps = []
    for service in presets.SERVICES:
        deployment = deployments.get(service.deployment)
        replicas = int((deployment or {}).get("spec", {}).get("replicas", 1))
        selector = render.selector(service)
        own = [p for p in pods if _matches(p, selector)]
        measured = readiness_seconds(own)
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
