"""The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.

Each pod template gets a ReplicaSet named `<deployment>-<hash>`, where the hash
(`template_hash`, FNV-1a of the template, DNS-safe) is also the `pod-template-hash` label of
the ReplicaSet, its selector and its pods. For each Deployment (queue key `namespace/name`) the
pure `decide_deployment` looks at the ReplicaSets it owns and their pods and returns actions:
create the new ReplicaSet (revision annotation max+1; a rollback re-uses the old ReplicaSet and
bumps its revision), scale (Recreate: every old one to zero, wait for their pods to go, then
the new one up; RollingUpdate: the new one up within `replicas + maxSurge`, old ones down
keeping `replicas - maxUnavailable` available, as kube's rolling.go), delete old empty
ReplicaSets beyond `revisionHistoryLimit`, and write `status` with the Available and
Progressing conditions `kubectl rollout status` reads. `spec.paused` stops rollouts (scaling
still applies). `DeploymentController` observes (informers built on `unistack.runtime`) and
acts; `unistack.kube.replicaset` turns ReplicaSets into pods.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import DEPLOYMENTS, PODS, REPLICASETS, ResourceRef
from unistack.kube.replicaset import is_terminating, owned_by, owner_reference
from unistack.runtime import events
from unistack.runtime.controller import (
    Controller,
    enqueue_objects,
    enqueue_owners,
    owner_key,
    run_with_informers,
)
from unistack.runtime.informer import (
    IndexFunc,
    SharedInformers,
    copy_object,
    namespace_index,
    owner_uids,
)
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
MINIMUM_AVAILABLE = "Deployment has minimum availability."
MINIMUM_UNAVAILABLE = "Deployment does not have minimum availability."
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.SafeEncodeString


# --- templates, hashes, revisions (pure) ------------------------------------------------------


def _without_hash(template: Obj | None) -> Obj:
    copied = copy_object(template or {})
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return copied


def template_hash(template: Obj | None) -> str:
    """A stable, DNS-safe hash of a pod template (its own hash label left out)."""
    data = orjson.dumps(_without_hash(template), option=orjson.OPT_SORT_KEYS)
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(value))


def spec_replicas(obj: Obj | None) -> int:
    return int(((obj or {}).get("spec") or {}).get("replicas", 1))


def status_count(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def revision_of(rs: Obj) -> int:
    value = (rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0")
    return int(value) if str(value).isdigit() else 0


def max_revision(rses: Iterable[Obj]) -> int:
    return max((revision_of(rs) for rs in rses), default=0)


def find_new_rs(deploy: Obj, rses: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (ignoring the hash label)."""
    template = deploy.get("spec", {}).get("template")
    wanted, digest = _without_hash(template), template_hash(template)
    for rs in sorted(rses, key=_creation_order):
        rs_template = rs.get("spec", {}).get("template")
        labels = (rs_template or {}).get("metadata", {}).get("labels") or {}
        if _without_hash(rs_template) == wanted or labels.get(HASH_LABEL) == digest:
            return rs
    return None


def _creation_order(rs: Obj) -> tuple[str, str]:
    return (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])


def new_rs_name(deploy: Obj) -> str:
    return f"{deploy['metadata']['name']}-{template_hash(deploy.get('spec', {}).get('template'))}"


def new_replica_set(deploy: Obj, replicas: int, revision: int) -> Obj:
    """The ReplicaSet for the Deployment's current template."""
    spec, meta = deploy.get("spec") or {}, deploy["metadata"]
    digest = template_hash(spec.get("template"))
    template = copy_object(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
    selector = copy_object(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
    surge, _ = fenceposts(deploy)
    annotations = {
        REVISION: str(revision),
        DESIRED_REPLICAS: str(spec_replicas(deploy)),
        MAX_REPLICAS: str(spec_replicas(deploy) + surge),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": new_rs_name(deploy),
            "namespace": meta.get("namespace"),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [owner_reference(deploy)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }


# --- rolling-update arithmetic (pure) ---------------------------------------------------------


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An int, or a percentage of `total` rounded up or down (intstr's GetScaledValue...)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        return int(value)
    exact = int(value[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def fenceposts(deploy: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable): surge rounds up, unavailable down; never both zero."""
    strategy = deploy.get("spec", {}).get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    replicas = spec_replicas(deploy)
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def new_rs_target(replicas: int, surge: int, total: int, new_replicas: int) -> int:
    """The new ReplicaSet's replicas: up by what the surge allows, never above `replicas`."""
    if new_replicas >= replicas:
        return replicas
    max_total = replicas + surge
    if total >= max_total:
        return new_replicas
    return new_replicas + min(max_total - total, replicas - new_replicas)


def old_rs_targets(
    replicas: int, unavailable: int, new_replicas: int, new_available: int, olds: list[Obj]
) -> dict[str, int]:
    """Old ReplicaSets' replicas after scaling down: unhealthy pods first, then available
    ones while `replicas - maxUnavailable` stay available (kube's reconcileOldReplicaSets)."""
    targets = {rs["metadata"]["name"]: spec_replicas(rs) for rs in olds}
    if not any(targets.values()):
        return targets
    min_available = replicas - unavailable
    new_unavailable = new_replicas - new_available
    max_scaled_down = new_replicas + sum(targets.values()) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return targets
    ordered = sorted(olds, key=_creation_order)
    _scale_down_unhealthy(ordered, targets, max_scaled_down)
    available = new_available + sum(status_count(rs, "availableReplicas") for rs in olds)
    _scale_down_available(ordered, targets, available - min_available)
    return targets


def _scale_down_unhealthy(ordered: list[Obj], targets: dict[str, int], budget: int) -> int:
    done = 0
    for rs in ordered:
        name = rs["metadata"]["name"]
        unhealthy = targets[name] - status_count(rs, "availableReplicas")
        step = min(budget - done, max(unhealthy, 0))
        targets[name] -= step
        done += step
    return done


def _scale_down_available(ordered: list[Obj], targets: dict[str, int], budget: int) -> None:
    for rs in ordered:
        name = rs["metadata"]["name"]
        step = min(targets[name], max(budget, 0))
        targets[name] -= step
        budget -= step


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateReplicaSet:
    body: Obj


@dataclass(frozen=True, slots=True)
class ScaleReplicaSet:
    name: str
    replicas: int


@dataclass(frozen=True, slots=True)
class SetRevision:
    name: str  # a ReplicaSet's
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteReplicaSet:
    name: str


@dataclass(frozen=True, slots=True)
class SetDeploymentRevision:
    revision: int


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    status: Obj


Action = (
    CreateReplicaSet
    | ScaleReplicaSet
    | SetRevision
    | DeleteReplicaSet
    | SetDeploymentRevision
    | UpdateStatus
)


def _scale(rs: Obj, replicas: int) -> list[Action]:
    return (
        [] if spec_replicas(rs) == replicas else [ScaleReplicaSet(rs["metadata"]["name"], replicas)]
    )


def rolling_update(deploy: Obj, new: Obj | None, olds: list[Obj], revision: int) -> list[Action]:
    """One step of a rolling update: scale the new ReplicaSet up, the old ones down."""
    replicas, (surge, unavailable) = spec_replicas(deploy), fenceposts(deploy)
    old_total = sum(spec_replicas(rs) for rs in olds)
    current = spec_replicas(new) if new is not None else 0
    target = new_rs_target(replicas, surge, old_total + current, current)
    actions: list[Action] = []
    if new is None:
        actions.append(CreateReplicaSet(new_replica_set(deploy, target, revision)))
    else:
        actions.extend(_scale(new, target))
    available = status_count(new, "availableReplicas")
    targets = old_rs_targets(replicas, unavailable, target, available, olds)
    for rs in olds:
        actions.extend(_scale(rs, targets[rs["metadata"]["name"]]))
    return actions


def recreate(
    deploy: Obj, new: Obj | None, olds: list[Obj], pods: list[Obj], revision: int
) -> list[Action]:
    """Scale every old ReplicaSet to zero; once their pods are gone, scale the new one up."""
    scale_downs = [a for rs in olds for a in _scale(rs, 0)]
    if scale_downs:
        return scale_downs
    old_uids = {rs["metadata"]["uid"] for rs in olds}
    if any(_runs(pod) and set(owner_uids(pod)) & old_uids for pod in pods):
        return []  # wait for the old pods to terminate
    if new is None:
        return [CreateReplicaSet(new_replica_set(deploy, spec_replicas(deploy), revision))]
    return _scale(new, spec_replicas(deploy))


def _runs(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def scale_paused(deploy: Obj, new: Obj | None, olds: list[Obj]) -> list[Action]:
    """Paused: no rollout, but a Deployment with one active ReplicaSet still scales."""
    active = [rs for rs in [*olds, new] if rs is not None and spec_replicas(rs) > 0]
    if len(active) == 1:
        return _scale(active[0], spec_replicas(deploy))
    return []


def history_to_delete(deploy: Obj, olds: list[Obj]) -> list[str]:
    """Old empty ReplicaSets beyond `revisionHistoryLimit`, lowest revision first."""
    limit = int(deploy.get("spec", {}).get("revisionHistoryLimit", 10))
    cleanable = sorted((rs for rs in olds if not is_terminating(rs)), key=revision_of)
    doomed = cleanable[: max(len(cleanable) - limit, 0)]
    return [
        rs["metadata"]["name"]
        for rs in doomed
        if spec_replicas(rs) == 0 and status_count(rs, "replicas") == 0
    ]


def _revision_actions(deploy: Obj, new: Obj | None, olds: list[Obj]) -> list[Action]:
    """Bump a re-used (rolled-back-to) ReplicaSet's revision; mirror it on the Deployment."""
    if new is None:
        return []
    revision = max(revision_of(new), max_revision(olds) + 1)
    actions: list[Action] = []
    if revision != revision_of(new):
        actions.append(SetRevision(new["metadata"]["name"], revision))
    annotations = deploy["metadata"].get("annotations") or {}
    if annotations.get(REVISION) != str(revision):
        actions.append(SetDeploymentRevision(revision))
    return actions


def rollout(deploy: Obj, new: Obj | None, olds: list[Obj], pods: list[Obj]) -> list[Action]:
    """The scaling actions the Deployment's strategy calls for now."""
    if deploy.get("spec", {}).get("paused"):
        return scale_paused(deploy, new, olds)
    revision = max_revision(olds) + 1
    if (deploy.get("spec", {}).get("strategy") or {}).get("type") == "Recreate":
        return recreate(deploy, new, olds, pods, revision)
    return rolling_update(deploy, new, olds, revision)


def decide_deployment(
    deploy: Obj, rses: Iterable[Obj], pods: Iterable[Obj], now: str
) -> list[Action]:
    """What to do for a Deployment given the ReplicaSets of its namespace and their pods."""
    if is_terminating(deploy):
        return []
    owned = [rs for rs in rses if owned_by(rs, deploy["metadata"]["uid"])]
    new = find_new_rs(deploy, owned)
    olds = [rs for rs in owned if rs is not new]
    actions = rollout(deploy, new, olds, list(pods))
    actions += _revision_actions(deploy, new, olds)
    actions += [DeleteReplicaSet(name) for name in history_to_delete(deploy, olds)]
    created = any(isinstance(a, CreateReplicaSet) for a in actions)
    status = deployment_status(deploy, new, owned, now, created=created)
    if status != (deploy.get("status") or {}):
        actions.append(UpdateStatus(status))
    return actions


# --- status (pure) ----------------------------------------------------------------------------


def _condition(kind: str, status: str, reason: str, message: str) -> Obj:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def available_condition(deploy: Obj, available: int) -> Obj:
    _, unavailable = fenceposts(deploy)
    if available >= spec_replicas(deploy) - unavailable:
        return _condition("Available", "True", "MinimumReplicasAvailable", MINIMUM_AVAILABLE)
    return _condition("Available", "False", "MinimumReplicasUnavailable", MINIMUM_UNAVAILABLE)


def progressing_condition(deploy: Obj, new_name: str, complete: bool, created: bool) -> Obj:
    """kube's Progressing condition for the state the rollout is in."""
    if deploy.get("spec", {}).get("paused"):
        return _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
    if complete:
        message = f'ReplicaSet "{new_name}" has successfully progressed.'
        return _condition("Progressing", "True", "NewReplicaSetAvailable", message)
    if created:
        message = f'Created new replica set "{new_name}"'
        return _condition("Progressing", "True", "NewReplicaSetCreated", message)
    previous = _find_condition(deploy, "Progressing")
    done_before = previous.get("reason") == "NewReplicaSetAvailable"
    if done_before and f'"{new_name}"' in previous.get("message", ""):  # no rollout since
        return _condition("Progressing", "True", "NewReplicaSetAvailable", previous["message"])
    message = f'ReplicaSet "{new_name}" is progressing.'
    return _condition("Progressing", "True", "ReplicaSetUpdated", message)


def _find_condition(deploy: Obj, kind: str) -> Obj:
    for condition in (deploy.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _stamped(deploy: Obj, condition: Obj, now: str) -> Obj:
    """The condition with kube's timestamps, kept from before while it is unchanged."""
    before = _find_condition(deploy, condition["type"])
    same_status = before.get("status") == condition["status"]
    same = same_status and before.get("reason") == condition["reason"]
    same = same and before.get("message") == condition["message"]
    return {
        **condition,
        "lastUpdateTime": before.get("lastUpdateTime", now) if same else now,
        "lastTransitionTime": before.get("lastTransitionTime", now) if same_status else now,
    }


def deployment_status(
    deploy: Obj, new: Obj | None, owned: list[Obj], now: str, *, created: bool = False
) -> Obj:
    """The Deployment's status from its ReplicaSets' statuses."""
    replicas = spec_replicas(deploy)
    counts = {
        field: sum(status_count(rs, field) for rs in owned)
        for field in ("replicas", "readyReplicas", "availableReplicas")
    }
    updated = status_count(new, "replicas")
    generation = deploy["metadata"].get("generation", 0)
    complete = (
        new is not None
        and updated == replicas
        and counts["replicas"] == replicas
        and counts["availableReplicas"] == replicas
    )
    new_name = new["metadata"]["name"] if new is not None else new_rs_name(deploy)
    conditions = [
        available_condition(deploy, counts["availableReplicas"]),
        progressing_condition(deploy, new_name, complete, created),
    ]
    return {
        "observedGeneration": generation,
        **counts,
        "updatedReplicas": updated,
        "unavailableReplicas": max(replicas - counts["availableReplicas"], 0),
        "conditions": [_stamped(deploy, c, now) for c in conditions],
    }


# --- the controller ---------------------------------------------------------------------------


class DeploymentController:
    """Watches Deployments, their ReplicaSets and pods; rolls each Deployment out."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        indexers: dict[str, IndexFunc] = {"namespace": namespace_index}
        self.deployments = shared.informer(DEPLOYMENTS)
        self.replicasets = shared.informer(REPLICASETS, indexers=indexers)
        self.pods = shared.informer(PODS, indexers={"owner": owner_uids})
        self.queue = WorkQueue("deployment")
        self.controller = Controller("deployment", self.queue, self.reconcile, workers)
        enqueue_objects(self.deployments, self.queue)
        enqueue_owners(self.replicasets, self.queue, DEPLOYMENTS)
        self.pods.add_handlers(on_delete=self._wake_for_pod)

    def _wake_for_pod(self, pod: Obj) -> None:
        """A pod going away wakes its ReplicaSet's Deployment (Recreate waits for that)."""
        rs_key = owner_key(pod, REPLICASETS)
        rs = self.replicasets.cache.get(rs_key) if rs_key else None
        deploy_key = owner_key(rs, DEPLOYMENTS) if rs is not None else None
        if deploy_key is not None:
            self.queue.add(deploy_key)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.deployments, self.replicasets, self.pods)

    async def reconcile(self, key: str) -> float | None:
        deploy = self.deployments.cache.get(key)
        if deploy is None:
            return None
        rses = self.replicasets.cache.by_index("namespace", deploy["metadata"]["namespace"])
        pods = [p for rs in rses for p in self.pods.cache.by_index("owner", rs["metadata"]["uid"])]
        for action in decide_deployment(deploy, rses, pods, events.timestamp()):
            await self.act(deploy, action)
        return None

    async def act(self, deploy: Obj, action: Action) -> None:
        namespace, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
        with contextlib.suppress(NotFound, AlreadyExists):
            if isinstance(action, CreateReplicaSet):
                await self.client.create(REPLICASETS, action.body, namespace)
            elif isinstance(action, DeleteReplicaSet):
                await self.client.delete(REPLICASETS, action.name, namespace)
            else:
                ref, target, patch, subresource = _patch_for(name, action)
                await self.client.patch(
                    ref, target, patch, namespace=namespace, subresource=subresource
                )


def _patch_for(deployment: str, action: Action) -> tuple[ResourceRef, str, Obj, str | None]:
    """(resource, name, merge patch, subresource) carrying out a patching action."""
    if isinstance(action, ScaleReplicaSet):
        return REPLICASETS, action.name, {"spec": {"replicas": action.replicas}}, None
    if isinstance(action, SetRevision):
        revision = {"annotations": {REVISION: str(action.revision)}}
        return REPLICASETS, action.name, {"metadata": revision}, None
    if isinstance(action, SetDeploymentRevision):
        revision = {"annotations": {REVISION: str(action.revision)}}
        return DEPLOYMENTS, deployment, {"metadata": revision}, None
    assert isinstance(action, UpdateStatus)
    return DEPLOYMENTS, deployment, {"status": action.status}, "status"
