"""The local-path provisioner: a PersistentVolume, and a directory for it, per claim of its class.

An external provisioner in the manner of sig-storage's provisioner library and Rancher's
local-path-provisioner, run beside the PV binder (`volumebinding`), which binds what this
creates:

- On start it makes sure the StorageClass `local-path` (provisioner `unistack.io/local-path`,
  reclaim policy Delete, binding Immediate) exists, and marks it the default when no class is.
- A new claim that names no class gets the default one from the API server's
  DefaultStorageClass admission. One made before any class was the default, and that no
  existing volume would satisfy, is given it here, as kube's PV controller does for such
  claims (RetroactiveDefaultStorageClass).
- A Pending claim of a class provisioned here, with no volume and none existing that would
  satisfy it, gets the volume `pvc-<claim uid>`: a hostPath `<root>/pvc-<uid>` of type
  DirectoryOrCreate (the directory is made here too), the claim's size and access modes, the
  class's reclaim policy and mount options, pre-bound to the claim through `claimRef` with its
  uid, and annotated `pv.kubernetes.io/provisioned-by`; the claim is annotated
  `volume.kubernetes.io/storage-provisioner` as kube does when it hands a claim over.
- A volume provisioned here whose claim is gone, with reclaim policy Delete (the binder leaves
  such volumes Released for their provisioner): its directory is removed, then the volume.

The directories live where this controller runs; in the embedded mode that is the one node.
Several nodes would need node affinity on the volumes and WaitForFirstConsumer binding: not
yet. `decide_claim`, `decide_volume` and `volume_for` are pure; `LocalPathProvisioner`
observes (shared informers) and acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unistack.client.api import AlreadyExists, Client, Conflict, NotFound
from unistack.client.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from unistack.kube.replicaset import is_terminating
from unistack.kube.volumebinding import PROVISIONED_BY, find_volume
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import SharedInformers, copy_object, object_key
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
PROVISIONER = "unistack.io/local-path"
CLASS_NAME = "local-path"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
REGISTER = "register"  # the queue key of registering the class

log = logging.getLogger(__name__)


# --- decisions (pure) -------------------------------------------------------------------------


def storage_class() -> Obj:
    """The class this provisioner registers."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS_NAME},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def is_default(storage_class: Obj) -> bool:
    annotations = storage_class.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(DEFAULT_CLASS, "")).lower() == "true"


def default_class(classes: Iterable[Obj]) -> str | None:
    """The default class's name; of several defaults the newest, then the first by name, as
    kube's GetDefaultClass picks (and the API server's DefaultStorageClass admission here)."""
    defaults = sorted(
        (c for c in classes if is_default(c)), key=lambda c: str(c["metadata"]["name"])
    )
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: str(c["metadata"].get("creationTimestamp") or ""))
    return str(newest["metadata"]["name"])


def volume_name(claim: Obj) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def volume_for(claim: Obj, storage_class: Obj, root: Path) -> Obj:
    """The volume provisioned for `claim`, pre-bound to it."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    name = volume_name(claim)
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")
    volume_spec: Obj = {
        "capacity": {"storage": size},
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": storage_class["metadata"]["name"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "claimRef": {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if storage_class.get("mountOptions"):
        volume_spec["mountOptions"] = list(storage_class["mountOptions"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": volume_spec,
    }


@dataclass(frozen=True, slots=True)
class SetClass:
    name: str


@dataclass(frozen=True, slots=True)
class Provision:
    storage_class: str


ClaimAction = SetClass | Provision


def decide_claim(
    claim: Obj, classes: Mapping[str, Obj], volumes: Mapping[str, Obj]
) -> list[ClaimAction]:
    """What to do for a claim, given every class and volume (by name)."""
    spec = claim.get("spec") or {}
    phase = (claim.get("status") or {}).get("phase", "Pending")
    if is_terminating(claim) or phase != "Pending" or spec.get("volumeName"):
        return []
    if spec.get("storageClassName") is None:  # only when no volume would do, as kube's
        default = default_class(classes.values())  # PV controller assigns it
        fits = find_volume(claim, volumes.values()) is not None
        return [SetClass(default)] if default and not fits else []
    wanted = classes.get(spec["storageClassName"])
    if wanted is None or wanted.get("provisioner") != PROVISIONER:
        return []
    if volume_name(claim) in volumes or find_volume(claim, volumes.values()) is not None:
        return []  # provisioned already, or the binder has one for it
    return [Provision(spec["storageClassName"])]


def decide_volume(volume: Obj, claims: Mapping[str, Obj]) -> bool:
    """Whether to delete a volume provisioned here: its claim is gone and it is not retained."""
    annotations = volume.get("metadata", {}).get("annotations") or {}
    spec = volume.get("spec") or {}
    if annotations.get(PROVISIONED_BY) != PROVISIONER or is_terminating(volume):
        return False
    if spec.get("persistentVolumeReclaimPolicy") != "Delete":
        return False
    ref = spec.get("claimRef") or {}
    claim = claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
    return bool(ref.get("uid")) and (claim is None or claim["metadata"].get("uid") != ref["uid"])


# --- the controller ---------------------------------------------------------------------------


class LocalPathProvisioner:
    """Provisions `local-path` volumes under `root` and deletes them after their claims."""

    def __init__(
        self, client: Client, root: Path, *, informers: SharedInformers | None = None
    ) -> None:
        self.client = client
        self.root = root
        shared = informers or SharedInformers(client)
        self.classes = shared.informer(STORAGECLASSES)
        self.claims = shared.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = shared.informer(PERSISTENTVOLUMES)
        self.queue = WorkQueue("local-path-provisioner")
        self.controller = Controller("local-path-provisioner", self.queue, self.reconcile)
        self.claims.add_handlers(self._claim, lambda old, new: self._claim(new), self._claim_gone)
        self.volumes.add_handlers(self._volume, lambda old, new: self._volume(new))
        self.classes.add_handlers(self._class_changed, lambda old, new: self._class_changed(new))
        self.queue.add(REGISTER)  # done first, once the caches have synced

    def _claim(self, claim: Obj) -> None:
        self.queue.add(f"claim:{object_key(claim)}")

    def _claim_gone(self, claim: Obj) -> None:
        for volume in self.volumes.cache.list():
            ref = (volume.get("spec") or {}).get("claimRef") or {}
            if ref.get("uid") == claim["metadata"].get("uid"):
                self._volume(volume)

    def _volume(self, volume: Obj) -> None:
        self.queue.add(f"volume:{object_key(volume)}")

    def _class_changed(self, _storage_class: Obj) -> None:
        for claim in self.claims.cache.list():
            self._claim(claim)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.classes, self.claims, self.volumes)

    async def register_class(self) -> None:
        """Create `local-path`, the default class when there is none."""
        if self.classes.cache.get(CLASS_NAME) is not None:
            return
        wanted = storage_class()
        if default_class(self.classes.cache.list()) is None:
            wanted["metadata"]["annotations"] = {DEFAULT_CLASS: "true"}
        with contextlib.suppress(AlreadyExists):
            await self.client.create(STORAGECLASSES, wanted)

    async def reconcile(self, key: str) -> float | None:
        kind, _, name = key.partition(":")
        if key == REGISTER:
            await self.register_class()
        elif kind == "claim":
            await self.reconcile_claim(name)
        else:
            await self.reconcile_volume(name)
        return None

    async def reconcile_claim(self, key: str) -> None:
        claim = self.claims.cache.get(key)
        if claim is None:
            return
        classes = {c["metadata"]["name"]: c for c in self.classes.cache.list()}
        volumes = {v["metadata"]["name"]: v for v in self.volumes.cache.list()}
        for action in decide_claim(claim, classes, volumes):
            if isinstance(action, SetClass):
                await self._set_class(claim, action.name)
            else:
                await self._provision(claim, classes[action.storage_class])

    async def _set_class(self, claim: Obj, name: str) -> None:
        updated = copy_object(claim)
        updated["spec"]["storageClassName"] = name
        with contextlib.suppress(Conflict, NotFound):  # a newer version is queued already
            await self.client.update(PERSISTENTVOLUMECLAIMS, updated)

    async def _provision(self, claim: Obj, storage_class: Obj) -> None:
        volume = volume_for(claim, storage_class, self.root)
        await asyncio.to_thread(
            Path(volume["spec"]["hostPath"]["path"]).mkdir, parents=True, exist_ok=True
        )
        with contextlib.suppress(AlreadyExists):
            await self.client.create(PERSISTENTVOLUMES, volume)
        annotated = copy_object(claim)
        annotations = annotated["metadata"].setdefault("annotations", {})
        if annotations.get(STORAGE_PROVISIONER) != PROVISIONER:
            annotations[STORAGE_PROVISIONER] = PROVISIONER
            with contextlib.suppress(Conflict, NotFound):
                await self.client.update(PERSISTENTVOLUMECLAIMS, annotated)
        log.info("provisioned %s for claim %s", volume["metadata"]["name"], object_key(claim))

    async def reconcile_volume(self, name: str) -> None:
        volume = self.volumes.cache.get(name)
        if volume is None:
            return
        claims = {object_key(c): c for c in self.claims.cache.list()}
        if not decide_volume(volume, claims):
            return
        path = Path((volume["spec"].get("hostPath") or {}).get("path", ""))
        if path.parent == self.root and path.name == name:  # never outside what we made
            await asyncio.to_thread(shutil.rmtree, path, True)
        with contextlib.suppress(NotFound):
            await self.client.delete(PERSISTENTVOLUMES, name)
        log.info("deleted %s and its directory", name)
