"""The StatefulSet controller: pods with stable names `<sts>-<ordinal>` and a claim per ordinal.

For each StatefulSet (queue key `namespace/name`) the pure `decide_stateful` looks at the pods
it owns and the PersistentVolumeClaims of its namespace and returns actions, as
kube-controller-manager's statefulset controller does: create each missing claim
`<template>-<sts>-<ordinal>` and then the pod `<sts>-<ordinal>` (labelled with its name, its
index and a `controller-revision-hash` of the template; hostname and subdomain set for the
governing service), delete failed pods so they are made again, remove ordinals beyond
`spec.replicas` from the highest down (claims are retained), replace pods of an old template
from the highest ordinal down to the partition, and write `status` through the status
subresource. With `podManagementPolicy: OrderedReady` (the default) one pod changes at a
time and ordinal i is made only once 0..i-1 are Running and Ready; with `Parallel` all at
once. Adoption of orphans and ControllerRevision objects are not implemented: the revision is
a hash of the template. `StatefulSetController` observes (informers built on
`unistack.runtime`) and acts; the pod helpers come from `unistack.kube.replicaset`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import PERSISTENTVOLUMECLAIMS, PODS, STATEFULSETS
from unistack.kube.replicaset import (
    is_available,
    is_ready,
    is_terminating,
    labels_of,
    owned_by,
    owner_reference,
    selector_matches,
    utc_now,
)
from unistack.runtime.controller import (
    Controller,
    enqueue_objects,
    enqueue_owners,
    run_with_informers,
)
from unistack.runtime.informer import SharedInformers, namespace_index
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


# --- names, revisions and the objects to create (pure) ----------------------------------------


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    """kube's `<template>-<sts>-<ordinal>`."""
    return f"{template['metadata']['name']}-{pod_name(sts, ordinal)}"


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    """The ordinal in a pod's name `<sts>-<ordinal>` (None when the name is not of that form)."""
    prefix, _, suffix = pod["metadata"]["name"].rpartition("-")
    if prefix != sts["metadata"]["name"] or not suffix.isdigit():
        return None
    return int(suffix)


def ordinals(sts: Obj) -> range:
    """The ordinals the StatefulSet wants: `spec.ordinals.start` and `spec.replicas` on."""
    spec = sts.get("spec") or {}
    start = int((spec.get("ordinals") or {}).get("start") or 0)
    return range(start, start + int(spec.get("replicas", 1)))


def claim_templates(sts: Obj) -> list[Obj]:
    return list((sts.get("spec") or {}).get("volumeClaimTemplates") or [])


def update_revision(sts: Obj) -> str:
    """`<sts>-<hash of spec.template>`: what kube's ControllerRevision name would carry."""
    template = json.dumps((sts.get("spec") or {}).get("template") or {}, sort_keys=True)
    digest = hashlib.sha256(template.encode()).hexdigest()[:10]
    return f"{sts['metadata']['name']}-{digest}"


def revision_of(pod: Obj) -> str | None:
    return labels_of(pod).get(REVISION_LABEL)


def claim_for(template: Obj, sts: Obj, ordinal: int) -> Obj:
    """The claim for one ordinal: the template's spec, the selector's labels, no owner (Retain)."""
    selector_labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    labels = {**(template["metadata"].get("labels") or {}), **selector_labels}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(template, sts, ordinal),
            "namespace": sts["metadata"].get("namespace"),
            "labels": labels,
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _claim_volumes(sts: Obj, ordinal: int, volumes: list[Obj]) -> list[Obj]:
    """The template's volumes with each claim template's volume pointing at its claim."""
    templates = claim_templates(sts)
    named = {t["metadata"]["name"] for t in templates}
    kept = [v for v in volumes if v.get("name") not in named]
    claims = [
        {
            "name": t["metadata"]["name"],
            "persistentVolumeClaim": {"claimName": claim_name(t, sts, ordinal)},
        }
        for t in templates
    ]
    return kept + claims


def pod_for(sts: Obj, ordinal: int) -> Obj:
    """The pod for one ordinal: the template, its identity labels, hostname, claims, owner."""
    spec = sts.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    meta, pod_spec = template.get("metadata") or {}, template.get("spec") or {}
    name = pod_name(sts, ordinal)
    labels = {
        **(meta.get("labels") or {}),
        POD_NAME_LABEL: name,
        POD_INDEX_LABEL: str(ordinal),
        REVISION_LABEL: update_revision(sts),
    }
    metadata: Obj = {
        "name": name,
        "namespace": sts["metadata"].get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(sts)],
    }
    if meta.get("annotations"):
        metadata["annotations"] = meta["annotations"]
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    if claim_templates(sts):
        pod_spec["volumes"] = _claim_volumes(sts, ordinal, pod_spec.get("volumes") or [])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateClaim:
    claim: Obj


@dataclass(frozen=True, slots=True)
class CreatePod:
    pod: Obj


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    status: Obj


Action = CreateClaim | CreatePod | DeletePod | UpdateStatus


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod)


def is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_ordered(sts: Obj) -> bool:
    return (sts.get("spec") or {}).get("podManagementPolicy") != "Parallel"


def owned_pods(sts: Obj, pods: Iterable[Obj]) -> dict[int, Obj]:
    """The pods this StatefulSet controls and selects, by ordinal."""
    uid, selector = sts["metadata"]["uid"], (sts.get("spec") or {}).get("selector")
    found: dict[int, Obj] = {}
    for pod in pods:
        ordinal = ordinal_of(sts, pod)
        if (
            ordinal is not None
            and owned_by(pod, uid)
            and selector_matches(selector, labels_of(pod))
        ):
            found[ordinal] = pod
    return found


def _missing_claims(sts: Obj, ordinal: int, claim_names: set[str]) -> list[Action]:
    return [
        CreateClaim(claim_for(t, sts, ordinal))
        for t in claim_templates(sts)
        if claim_name(t, sts, ordinal) not in claim_names
    ]


def _ordinal_actions(sts: Obj, ordinal: int, pod: Obj | None, claims: set[str]) -> list[Action]:
    """Claims then pod for a missing ordinal; a delete for a finished pod; else nothing."""
    if pod is None:
        return [*_missing_claims(sts, ordinal, claims), CreatePod(pod_for(sts, ordinal))]
    if is_finished(pod) and not is_terminating(pod):
        return [DeletePod(pod["metadata"]["name"])]
    return []


def scale_up(sts: Obj, pods: dict[int, Obj], claims: set[str]) -> tuple[list[Action], bool]:
    """Actions for the wanted ordinals, and whether all of them are Running and Ready.

    Ordered: stop at the first ordinal that needed an action or is not yet Running and Ready.
    """
    actions: list[Action] = []
    healthy = True
    for ordinal in ordinals(sts):
        pod = pods.get(ordinal)
        step = _ordinal_actions(sts, ordinal, pod, claims)
        actions.extend(step)
        if step or pod is None or is_terminating(pod) or not is_running_and_ready(pod):
            healthy = False
            if is_ordered(sts):
                break
    return actions, healthy


def scale_down(sts: Obj, pods: dict[int, Obj]) -> list[Action]:
    """Delete pods beyond the wanted ordinals, highest first; ordered: one, once none is going."""
    wanted = ordinals(sts)
    condemned = sorted((o for o in pods if o not in wanted), reverse=True)
    if not is_ordered(sts):
        return [DeletePod(pod_name(sts, o)) for o in condemned if not is_terminating(pods[o])]
    if not condemned or any(is_terminating(pods[o]) for o in condemned):
        return []
    return [DeletePod(pod_name(sts, condemned[0]))]


def _partition(sts: Obj) -> int | None:
    """The lowest ordinal a rolling update replaces (None: updates are OnDelete)."""
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return int((strategy.get("rollingUpdate") or {}).get("partition") or 0)


def roll_update(sts: Obj, pods: dict[int, Obj]) -> list[Action]:
    """Delete the highest-ordinal pod of an old template at or above the partition.

    Called only when every wanted pod is Running and Ready; the recreated pod gets the new
    template on the next sync.
    """
    partition, revision = _partition(sts), update_revision(sts)
    if partition is None:
        return []
    for ordinal in sorted((o for o in ordinals(sts) if o >= partition), reverse=True):
        pod = pods.get(ordinal)
        if pod is not None and revision_of(pod) != revision:
            return [DeletePod(pod["metadata"]["name"])]
    return []


def stateful_status(sts: Obj, pods: dict[int, Obj], now: datetime.datetime) -> Obj:
    """replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas, revisions."""
    active = [p for p in pods.values() if not is_terminating(p) and not is_finished(p)]
    min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
    update = update_revision(sts)
    updated = sum(1 for p in active if revision_of(p) == update)
    current = (sts.get("status") or {}).get("currentRevision") or update
    if updated == len(ordinals(sts)) and updated == len(active):
        current = update
    return {
        "replicas": len(active),
        "readyReplicas": sum(1 for p in active if is_ready(p)),
        "currentReplicas": sum(1 for p in active if revision_of(p) == current),
        "updatedReplicas": updated,
        "availableReplicas": sum(1 for p in active if is_available(p, min_ready, now)),
        "currentRevision": current,
        "updateRevision": update,
        "observedGeneration": sts["metadata"].get("generation", 0),
    }


def _status_changed(sts: Obj, status: Obj) -> bool:
    current = sts.get("status") or {}
    return any(current.get(key) != value for key, value in status.items())


def manage_pods(sts: Obj, pods: dict[int, Obj], claims: set[str]) -> list[Action]:
    """Scale up, then (ordered: only once all wanted pods are healthy) scale down and update."""
    if is_terminating(sts):
        return []
    actions, healthy = scale_up(sts, pods, claims)
    if is_ordered(sts) and not healthy:
        return actions
    actions.extend(scale_down(sts, pods))
    if healthy and not actions:
        actions.extend(roll_update(sts, pods))
    return actions


def decide_stateful(
    sts: Obj, pods: Iterable[Obj], claim_names: Iterable[str], now: datetime.datetime
) -> list[Action]:
    """What to do for a StatefulSet given its namespace's pods and claim names."""
    owned = owned_pods(sts, pods)
    actions = manage_pods(sts, owned, set(claim_names))
    status = stateful_status(sts, owned, now)
    if _status_changed(sts, status):
        actions.append(UpdateStatus(status))
    return actions


# --- the controller ---------------------------------------------------------------------------


class StatefulSetController:
    """Watches StatefulSets, Pods and PersistentVolumeClaims; keeps each set's ordinals."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.statefulsets = shared.informer(STATEFULSETS)
        self.pods = shared.informer(PODS, indexers={"namespace": namespace_index})
        self.claims = shared.informer(
            PERSISTENTVOLUMECLAIMS, indexers={"namespace": namespace_index}
        )
        self.queue = WorkQueue("statefulset")
        self.controller = Controller("statefulset", self.queue, self.reconcile, workers)
        enqueue_objects(self.statefulsets, self.queue)
        enqueue_owners(self.pods, self.queue, STATEFULSETS)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.statefulsets, self.pods, self.claims)

    async def reconcile(self, key: str) -> float | None:
        sts = self.statefulsets.cache.get(key)
        if sts is None:
            return None
        namespace = sts["metadata"]["namespace"]
        pods = self.pods.cache.by_index("namespace", namespace)
        claims = [c["metadata"]["name"] for c in self.claims.cache.by_index("namespace", namespace)]
        for action in decide_stateful(sts, pods, claims, utc_now()):
            await self.act(sts, action)
        return None

    async def act(self, sts: Obj, action: Action) -> None:
        """Apply one action; a create that already happened or a delete already done is fine."""
        namespace = sts["metadata"]["namespace"]
        if isinstance(action, CreateClaim):
            with contextlib.suppress(AlreadyExists):
                await self.client.create(PERSISTENTVOLUMECLAIMS, action.claim)
        elif isinstance(action, CreatePod):
            with contextlib.suppress(AlreadyExists):
                await self.client.create(PODS, action.pod)
        elif isinstance(action, DeletePod):
            with contextlib.suppress(NotFound):
                await self.client.delete(PODS, action.name, namespace)
        elif isinstance(action, UpdateStatus):
            with contextlib.suppress(NotFound):
                await self.client.patch(
                    STATEFULSETS,
                    sts["metadata"]["name"],
                    {"status": action.status},
                    namespace=namespace,
                    subresource="status",
                )
