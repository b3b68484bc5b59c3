"""The PersistentVolume binder: binds claims to statically provisioned volumes, and releases them.

As kube-controller-manager's persistentvolume controller; dynamic provisioning is the
provisioner's (`unistack.kube.provisioner`). Two
queues of keys: claims (`namespace/name`) and volumes (`name`). For a Pending claim the pure
`decide_claim` picks the smallest volume that satisfies it (same storage class, access modes a
superset, capacity large enough, same volume mode, the claim's selector matching the volume's
labels, not pre-bound to another claim) or the one its `spec.volumeName` names; the binding is
written both ways: the volume's `spec.claimRef` and `status.phase` Bound, then the claim's
`spec.volumeName`, bind-completed annotation and `status` (phase, capacity, accessModes). When
nothing fits the claim stays Pending with a `FailedBinding` Event, and is tried again when
volumes change. The pure `decide_volume` makes unbound volumes Available and, once their bound
claim is gone, Released (reclaim policy Retain, or a volume an external provisioner made,
which that provisioner deletes: `unistack.kube.provisioner`) or deleted (Delete).
`VolumeBindingController` observes (informers from `unistack.runtime`) and acts; quantities are
read with `unistack.quantity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from unistack import quantity
from unistack.client.api import Client, NotFound
from unistack.client.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES
from unistack.kube.labels import labels_of, selector_matches
from unistack.kube.replicaset import is_terminating
from unistack.runtime import events
from unistack.runtime.controller import Controller, enqueue_objects
from unistack.runtime.informer import SharedInformers, copy_object, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
COMPONENT = "persistentvolume-controller"
NO_VOLUMES = "no persistent volumes available for this claim and no storage class is set"

log = logging.getLogger(__name__)


# --- matching (pure) --------------------------------------------------------------------------


def storage_of(value: Any) -> Fraction | None:
    """A storage quantity, or None when absent or unreadable."""
    try:
        return quantity.parse_quantity(value) if value is not None else None
    except ValueError:
        return None


def volume_size(volume: Obj) -> Fraction:
    return storage_of((volume.get("spec") or {}).get("capacity", {}).get("storage")) or Fraction(0)


def claim_request(claim: Obj) -> Fraction:
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    return storage_of(requests.get("storage")) or Fraction(0)


def _selector_allows(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A claim's selector: absent or empty selects every volume (unlike a workload's)."""
    return selector_matches(selector or {}, labels)


def claim_ref_allows(volume: Obj, claim: Obj) -> bool:
    """The volume is not pre-bound, or pre-bound to this claim (by name, and uid when set)."""
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref:
        return True
    meta = claim["metadata"]
    same_name = ref.get("name") == meta["name"] and ref.get("namespace") == meta.get("namespace")
    return same_name and ref.get("uid") in (None, "", meta.get("uid"))


def volume_satisfies(volume: Obj, claim: Obj) -> bool:
    """The volume can serve the claim (its claimRef aside)."""
    spec, wanted = volume.get("spec") or {}, claim.get("spec") or {}
    return (
        (spec.get("storageClassName") or "") == (wanted.get("storageClassName") or "")
        and set(wanted.get("accessModes") or []) <= set(spec.get("accessModes") or [])
        and volume_size(volume) >= claim_request(claim)
        and (spec.get("volumeMode") or "Filesystem") == (wanted.get("volumeMode") or "Filesystem")
        and _selector_allows(wanted.get("selector"), labels_of(volume))
    )


def _bindable(volume: Obj) -> bool:
    phase = (volume.get("status") or {}).get("phase")
    return not is_terminating(volume) and phase not in ("Released", "Failed")


def find_volume(claim: Obj, volumes: Iterable[Obj]) -> Obj | None:
    """The volume to bind: one pre-bound to the claim first, else the smallest that fits."""
    fits = [
        v
        for v in volumes
        if _bindable(v) and claim_ref_allows(v, claim) and volume_satisfies(v, claim)
    ]
    fits.sort(key=lambda v: (not (v.get("spec") or {}).get("claimRef"), volume_size(v)))
    return fits[0] if fits else None


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindClaim:
    volume: str


@dataclass(frozen=True, slots=True)
class ReportPending:
    message: str


@dataclass(frozen=True, slots=True)
class SetVolumePhase:
    phase: str


@dataclass(frozen=True, slots=True)
class DeleteVolume:
    pass


ClaimAction = BindClaim | ReportPending
VolumeAction = SetVolumePhase | DeleteVolume


def bound_both_ways(volume: Obj, claim: Obj) -> bool:
    """Every write of a binding is done: claimRef, both phases, volumeName, annotation."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    annotations = claim["metadata"].get("annotations") or {}
    return (
        ref.get("uid") == claim["metadata"].get("uid")
        and (volume.get("status") or {}).get("phase") == "Bound"
        and (claim.get("spec") or {}).get("volumeName") == volume["metadata"]["name"]
        and annotations.get(BIND_COMPLETED) == "yes"
        and (claim.get("status") or {}).get("phase") == "Bound"
    )


def _decide_named(claim: Obj, name: str, volumes: Mapping[str, Obj]) -> list[ClaimAction]:
    volume = volumes.get(name)
    if volume is None:
        return [ReportPending(f"volume {name!r} not found")]
    if bound_both_ways(volume, claim):
        return []
    if not claim_ref_allows(volume, claim):
        return [ReportPending(f"volume {name!r} already bound to a different claim")]
    if not volume_satisfies(volume, claim):
        return [ReportPending(f"volume {name!r} does not satisfy the claim")]
    return [BindClaim(name)]


def decide_claim(claim: Obj, volumes: Mapping[str, Obj]) -> list[ClaimAction]:
    """What to do for a claim given every volume (by name)."""
    if is_terminating(claim):
        return []
    name = (claim.get("spec") or {}).get("volumeName")
    if name:
        return _decide_named(claim, name, volumes)
    volume = find_volume(claim, volumes.values())
    return [BindClaim(volume["metadata"]["name"])] if volume else [ReportPending(NO_VOLUMES)]


def decide_volume(volume: Obj, claims: Mapping[str, Obj]) -> list[VolumeAction]:
    """What to do for a volume given the claims (by `namespace/name`)."""
    if is_terminating(volume):
        return []
    phase = (volume.get("status") or {}).get("phase")
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    if not ref.get("uid"):  # unbound, or pre-bound to a claim not bound yet
        return [] if phase == "Available" else [SetVolumePhase("Available")]
    claim = claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
    if claim is not None and claim["metadata"].get("uid") == ref["uid"]:
        return []
    annotations = volume.get("metadata", {}).get("annotations") or {}
    policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
    if policy == "Delete" and not annotations.get(PROVISIONED_BY):
        return [DeleteVolume()]  # an external provisioner deletes what it provisioned
    return [] if phase in ("Released", "Failed") else [SetVolumePhase("Released")]


def claim_ref(claim: Obj) -> Obj:
    meta = claim["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def bound_claim_status(volume: Obj) -> Obj:
    spec = volume.get("spec") or {}
    return {
        "phase": "Bound",
        "capacity": dict(spec.get("capacity") or {}),
        "accessModes": list(spec.get("accessModes") or []),
    }


def claim_event(claim: Obj, reason: str, message: str, now: str) -> Obj:
    """A v1 Warning Event about the claim, from this controller."""
    return events.event(
        claim, "PersistentVolumeClaim", "Warning", reason, message, component=COMPONENT, now=now
    )


# --- the controller ---------------------------------------------------------------------------


class VolumeBindingController:
    """Watches PersistentVolumes and PersistentVolumeClaims; binds, releases, reclaims."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 1
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.events = events.EventRecorder(client, COMPONENT)
        self.volumes = shared.informer(PERSISTENTVOLUMES)
        self.claims = shared.informer(PERSISTENTVOLUMECLAIMS)
        self.claim_queue = WorkQueue("volumebinding-claims")
        self.volume_queue = WorkQueue("volumebinding-volumes")
        self.controllers = (
            Controller("volumebinding-claims", self.claim_queue, self.reconcile_claim, workers),
            Controller("volumebinding-volumes", self.volume_queue, self.reconcile_volume, 1),
        )
        enqueue_objects(self.claims, self.claim_queue)
        enqueue_objects(self.volumes, self.volume_queue)
        self.volumes.add_handlers(
            on_add=self._wake_claims,
            on_update=lambda old, new: self._wake_claims(new),
            on_delete=self._wake_claims,
        )
        self.claims.add_handlers(on_delete=self._wake_volume)

    def _wake_claims(self, volume: Obj) -> None:
        """A volume's change may let a waiting claim bind: queue the claims not yet Bound."""
        for claim in self.claims.cache.list():
            if (claim.get("status") or {}).get("phase") != "Bound":
                self.claim_queue.add(object_key(claim))

    def _wake_volume(self, claim: Obj) -> None:
        name = (claim.get("spec") or {}).get("volumeName")
        if name:
            self.volume_queue.add(name)

    async def run(self) -> None:
        tasks = [self.volumes.start(), self.claims.start()]
        try:
            await self.volumes.wait_synced()
            await self.claims.wait_synced()
            async with asyncio.TaskGroup() as group:
                for controller in self.controllers:
                    group.create_task(controller.run())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _volumes_by_name(self) -> dict[str, Obj]:
        return {v["metadata"]["name"]: v for v in self.volumes.cache.list()}

    def _claims_by_key(self) -> dict[str, Obj]:
        return {object_key(c): c for c in self.claims.cache.list()}

    async def reconcile_claim(self, key: str) -> float | None:
        claim = self.claims.cache.get(key)
        if claim is None:
            return None
        volumes = self._volumes_by_name()
        for action in decide_claim(claim, volumes):
            if isinstance(action, BindClaim):
                await self.bind(volumes[action.volume], claim)
            else:
                await self._record(claim, "FailedBinding", action.message)
        return None

    async def reconcile_volume(self, key: str) -> float | None:
        volume = self.volumes.cache.get(key)
        if volume is None:
            return None
        for action in decide_volume(volume, self._claims_by_key()):
            if isinstance(action, SetVolumePhase):
                await self._set_volume_phase(volume, action.phase)
            elif await self._claim_gone(volume):
                with contextlib.suppress(NotFound):
                    await self.client.delete(PERSISTENTVOLUMES, key)
        return None

    async def bind(self, volume: Obj, claim: Obj) -> None:
        """Volume first (claimRef, compare-and-swap; then phase), then the claim."""
        volume = await self._bind_volume(volume, claim)
        await self._bind_claim(volume, claim)

    async def _bind_volume(self, volume: Obj, claim: Obj) -> Obj:
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != claim["metadata"].get("uid"):
            volume = copy_object(volume)
            volume["spec"]["claimRef"] = claim_ref(claim)
            volume = await self.client.update(PERSISTENTVOLUMES, volume)  # Conflict: retried
        if (volume.get("status") or {}).get("phase") != "Bound":
            volume = await self._set_volume_phase(volume, "Bound")
        return volume

    async def _bind_claim(self, volume: Obj, claim: Obj) -> None:
        name = volume["metadata"]["name"]
        annotations = claim["metadata"].get("annotations") or {}
        namespace = claim["metadata"]["namespace"]
        if claim["spec"].get("volumeName") != name or annotations.get(BIND_COMPLETED) != "yes":
            claim = copy_object(claim)
            claim["spec"]["volumeName"] = name
            claim["metadata"]["annotations"] = {**annotations, BIND_COMPLETED: "yes"}
            claim = await self.client.update(PERSISTENTVOLUMECLAIMS, claim)
        status = {"status": bound_claim_status(volume)}
        await self.client.patch(
            PERSISTENTVOLUMECLAIMS, claim["metadata"]["name"], status,
            namespace=namespace, subresource="status",
        )  # fmt: skip

    async def _set_volume_phase(self, volume: Obj, phase: str) -> Obj:
        name = volume["metadata"]["name"]
        return await self.client.patch(
            PERSISTENTVOLUMES, name, {"status": {"phase": phase}}, subresource="status"
        )

    async def _claim_gone(self, volume: Obj) -> bool:
        """Ask the API, not the cache, before deleting a volume for its claim's absence."""
        ref = volume["spec"]["claimRef"]
        try:
            claim = await self.client.get(PERSISTENTVOLUMECLAIMS, ref["name"], ref["namespace"])
        except NotFound:
            return True
        return bool(claim["metadata"].get("uid") != ref.get("uid"))

    async def _record(self, claim: Obj, reason: str, message: str) -> None:
        await self.events.send(claim, "PersistentVolumeClaim", "Warning", reason, message)
