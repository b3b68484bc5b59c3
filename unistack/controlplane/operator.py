"""The control-plane operator: keeps the objects `render` derives from each ControlPlane in
place, and reports the services' health in the ControlPlane's status.

It watches the ControlPlanes, and the Deployments and Services it manages, in
`unistack-system` (informers, `unistack.runtime`); any change, or a resync every few seconds,
runs `reconcile`: objects missing are created, objects whose content hash
(`render.RENDERED_HASH`) differs are patched, managed objects no longer rendered are deleted,
and `status` is rewritten when it changed. It also keeps `kube-system/kube-dns` and its
EndpointSlice listing the Ready DNS pods (`render.dns_service`, `render.dns_endpoint_slice`),
when the environment names the cluster DNS address. On one machine (`Environment.pin_images`)
it reads, at every pass, the digest each release's tag names in the image store (`resolve`)
and renders the images by digest too, so a tag moved by a rebuild rolls the Deployments; it
renders nothing for a release whose image is not there yet (the registry builds it at start;
no pod could run it) until `IMAGE_WAIT` has passed. The decisions are pure (`plan`,
`status_of`); the operator only does the I/O. It runs in `unistack serve controllers`, under
a Lease of its own, so one acts when several run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from unistack.client.api import AlreadyExists, ApiError, Client, Conflict, NotFound
from unistack.client.resources import (
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    PODS,
    SECRETS,
    SERVICES,
    ResourceRef,
)
from unistack.controlplane import kind, presets, render
from unistack.runtime.informer import Informer
from unistack.runtime.syncloop import SyncLoop

Obj = dict[str, Any]
MANAGED = f"app.kubernetes.io/managed-by={render.MANAGED_BY}"
REFS = {"Deployment": DEPLOYMENTS, "Service": SERVICES}
RESYNC = 10.0
DNS = next(s for s in presets.SERVICES if s.component == presets.DNS)
# What `unistack upgrade apply` estimated, as JSON {"to": release, "seconds": N}; the operator
# copies it into status.upgrade so the estimate stands next to the actual duration.
ESTIMATE_ANNOTATION = "controlplane.unistack.io/upgrade-estimate"

# The image of a release not in the store yet: the operator waits this long from its start
# for the registry to build it before rendering it by tag alone.
IMAGE_WAIT = 120.0
IMAGE_POLL = 1.0
Resolve = Callable[[str], str | None]  # release -> its image's manifest digest, if stored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One write the operator decided on."""

    verb: str  # create | patch | delete
    obj: Obj


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def plan(desired: list[Obj], current: Iterable[Obj], owner_uid: str) -> list[Change]:
    """The writes that make `current` (the managed objects) match `desired`."""
    stored = {_key(obj): obj for obj in current}
    changes: list[Change] = []
    for obj in desired:
        found = stored.pop(_key(obj), None)
        if found is None:
            changes.append(Change("create", obj))
        elif _hash(found) != _hash(obj):
            changes.append(Change("patch", obj))
    for obj in stored.values():
        if owner_uid and _owned_by(obj, owner_uid):
            changes.append(Change("delete", obj))
    return changes


def _hash(obj: Obj) -> str:
    return (obj["metadata"].get("annotations") or {}).get(render.RENDERED_HASH, "")


def service_status(deployment: Obj | None) -> Obj:
    """One service's line in the status: ready/desired replicas and the release it runs."""
    if deployment is None:
        return {"ready": 0, "desired": 0, "updated": 0, "release": "", "healthy": False}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    # as `kubectl rollout status`: the controller saw this spec, every replica runs the new
    # template, no old replica is left, and all are ready
    total = int(status.get("replicas") or 0)
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    current = current and total <= updated
    labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    return {
        "ready": ready,
        "desired": desired,
        "updated": updated,
        "release": labels.get(render.RELEASE_LABEL, ""),
        "healthy": current and ready >= desired and updated >= desired,
    }


def rollout(controlplane: Obj, deployments: dict[str, Obj]) -> dict[str, str]:
    """The release each service runs now: a new `spec.release` goes through the services one
    at a time, in `presets.SERVICES` order, each once the one before runs it and is healthy
    (identity first: every other service validates tokens against it). Rolling back is the
    same walk towards the old release."""
    target = (controlplane.get("spec") or {}).get("release", "")
    releases: dict[str, str] = {}
    open_ = True
    for service in presets.SERVICES:
        found = deployments.get(service.deployment)
        if found is None:  # not there yet: start it at the target
            releases[service.name] = target
            continue
        current = service_status(found)
        if open_:
            releases[service.name] = target
            open_ = current["release"] == target and current["healthy"]
        else:
            releases[service.name] = current["release"] or target
    return releases


def status_of(controlplane: Obj, deployments: dict[str, Obj], now: float | None = None) -> Obj:
    """The ControlPlane's status from its Deployments (`deployments` by name)."""
    spec, previous = controlplane.get("spec") or {}, controlplane.get("status") or {}
    services = {s.name: service_status(deployments.get(s.deployment)) for s in presets.SERVICES}
    healthy = sum(1 for s in services.values() if s["healthy"])
    release = spec.get("release", "")
    settled = healthy == len(services) and all(s["release"] == release for s in services.values())
    status: Obj = {
        "observedGeneration": controlplane["metadata"].get("generation", 0),
        "phase": "Ready" if settled else "Progressing",
        "ready": f"{healthy}/{len(services)}",
        "release": release if settled else previous.get("release", ""),
        "services": services,
    }
    upgrade = upgrade_of(controlplane, services, time.time() if now is None else now)
    if upgrade is not None:
        status["upgrade"] = upgrade
    return status


def upgrade_of(controlplane: Obj, services: dict[str, Obj], now: float) -> Obj | None:
    """The upgrade in progress (or the last one): from which release to which, when each
    service started and finished, and the estimate `unistack upgrade apply` annotated."""
    spec, previous = controlplane.get("spec") or {}, controlplane.get("status") or {}
    target, settled = spec.get("release", ""), previous.get("release", "")
    record = previous.get("upgrade")
    if record is None or record.get("to") != target:
        if not settled or settled == target:
            return record  # first start, or nothing to do
        record = {"from": settled, "to": target, "startedAt": now, "phase": "InProgress"}
        record["steps"] = {}
    record = {**record, "steps": dict(record.get("steps") or {})}
    estimate = _estimate(controlplane, target)
    if estimate:
        record["estimateSeconds"] = estimate
    if record.get("phase") != "InProgress":
        return record
    for name, service in services.items():
        step = dict(record["steps"].get(name) or {})
        if service["release"] == target and "startedAt" not in step:
            step["startedAt"] = now
        if service["release"] == target and service["healthy"] and "finishedAt" not in step:
            step["finishedAt"] = now
            step["seconds"] = round(now - step.get("startedAt", now), 1)
            step["replicas"] = service["desired"]
        if step:
            record["steps"][name] = step
    if all("finishedAt" in record["steps"].get(s.name, {}) for s in presets.SERVICES):
        record.update(phase="Complete", finishedAt=now)
        record["seconds"] = round(now - record["startedAt"], 1)
    return record


def _estimate(controlplane: Obj, target: str) -> float:
    annotations = controlplane["metadata"].get("annotations") or {}
    try:
        estimate = orjson.loads(annotations.get(ESTIMATE_ANNOTATION, "{}"))
    except orjson.JSONDecodeError:
        return 0.0
    if not isinstance(estimate, dict) or estimate.get("to") != target:
        return 0.0
    return float(estimate.get("seconds") or 0.0)


class Operator:
    """Reconciles every ControlPlane in `unistack-system` with the cluster."""

    def __init__(
        self,
        client: Client,
        environment: render.Environment,
        resync: float = RESYNC,
        resolve: Resolve | None = None,
    ) -> None:
        self.client = client
        self.environment = environment
        self.resync = resync
        self.resolve = resolve if environment.pin_images else None
        self.started = time.monotonic()
        self.controlplanes = Informer(client, kind.REF, kind.NAMESPACE)
        self.managed = {
            name: Informer(client, ref, kind.NAMESPACE, MANAGED) for name, ref in REFS.items()
        }
        self.dns_pods = Informer(client, PODS, kind.NAMESPACE, render.label_selector(DNS))
        # the token keys: a rotation rolls the API pods (`render.KEYS_HASH`)
        self.secrets = Informer(client, SECRETS, kind.NAMESPACE, render.PUBLISHED_SELECTOR)
        self.loop = SyncLoop(
            "control plane",
            self.reconcile,
            (self.controlplanes, *self.managed.values(), self.dns_pods, self.secrets),
            resync=resync,
        )

    async def run(self) -> None:
        await install_definition(self.client)
        await self.loop.run()

    async def reconcile(self) -> None:
        current = [obj for i in self.managed.values() for obj in i.cache.list()]
        for controlplane in self.controlplanes.cache.list():
            if controlplane["metadata"].get("deletionTimestamp"):
                continue
            deployments = {
                d["metadata"]["name"]: d for d in self.managed["Deployment"].cache.list()
            }
            releases = rollout(controlplane, deployments)
            target = str((controlplane.get("spec") or {}).get("release") or "")
            environment = self.pinned({target, *releases.values()})
            if environment is None:
                asyncio.get_running_loop().call_later(IMAGE_POLL, self.loop.poke)
                continue
            desired = render.render(controlplane, environment, releases, self.keys_hash())
            for change in plan(desired, current, controlplane["metadata"]["uid"]):
                await self._write(change)
            await self._report(controlplane, status_of(controlplane, deployments))
        if self.environment.cluster_dns:
            await self._publish_dns()

    def pinned(self, releases: set[str]) -> render.Environment | None:
        """The environment with the digest of each release's image (`resolve`), or None
        while one is not stored yet and `IMAGE_WAIT` has not passed."""
        if self.resolve is None:
            return self.environment
        found = {release: self.resolve(release) for release in sorted(releases) if release}
        digests = {release: digest for release, digest in found.items() if digest}
        if len(digests) < len(found) and time.monotonic() - self.started < IMAGE_WAIT:
            log.info(
                "control plane: waiting for the image of %s", sorted(set(found) - set(digests))
            )
            return None
        return replace(self.environment, digests=digests)

    def keys_hash(self) -> str:
        """The token keys' Secret's digest ("" while there is none)."""
        for secret in self.secrets.cache.list():
            if secret["metadata"]["name"] == render.FERNET_SECRET:
                return render.secret_hash(secret)
        return ""

    async def _publish_dns(self) -> None:
        """kube-dns and its slice of Ready DNS pods, created or brought up to date."""
        ns = render.DNS_NAMESPACE
        with contextlib.suppress(AlreadyExists):
            try:
                await self.client.get(SERVICES, render.DNS_SERVICE, ns)
            except NotFound:
                await self.client.create(
                    SERVICES, render.dns_service(self.environment.cluster_dns), ns
                )
        desired = render.dns_endpoint_slice(self.dns_pods.cache.list())
        try:
            current = await self.client.get(ENDPOINTSLICES, render.DNS_SLICE, ns)
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                await self.client.create(ENDPOINTSLICES, desired, ns)
            return
        fields = ("endpoints", "ports", "addressType")
        same = all(current.get(f) == desired[f] for f in fields)
        if same and current["metadata"].get("labels") == desired["metadata"]["labels"]:
            return
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        with contextlib.suppress(Conflict, NotFound):  # the next pass
            await self.client.update(ENDPOINTSLICES, desired)

    async def _write(self, change: Change) -> None:
        obj = change.obj
        ref, name = REFS[obj["kind"]], obj["metadata"]["name"]
        log.info("control plane: %s %s %s", change.verb, obj["kind"], name)
        try:
            if change.verb == "create":
                await self.client.create(ref, obj, kind.NAMESPACE)
            elif change.verb == "patch":
                await self.client.patch(ref, name, _merge_patch(obj), namespace=kind.NAMESPACE)
            else:
                await self.client.delete(ref, name, kind.NAMESPACE)
        except (AlreadyExists, NotFound, Conflict) as exc:
            log.info("control plane: %s %s: %s (next pass)", change.verb, name, exc.reason)

    async def _report(self, controlplane: Obj, status: Obj) -> None:
        if controlplane.get("status") == status:
            return
        with contextlib.suppress(Conflict, NotFound):
            await self.client.update_status(kind.REF, {**controlplane, "status": status})


def _merge_patch(obj: Obj) -> Obj:
    """The rendered content as a merge patch: a Service keeps the cluster IP it was given."""
    meta = obj["metadata"]
    return {
        "metadata": {
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
            "ownerReferences": meta.get("ownerReferences"),
        },
        "spec": obj["spec"],
    }


async def install_definition(client: Client, timeout: float = 30.0) -> None:
    """Create the ControlPlane CRD unless it exists, and wait until it is served."""
    with contextlib.suppress(AlreadyExists):
        await client.create(CUSTOMRESOURCEDEFINITIONS, kind.definition())
    await _served(client, kind.REF, timeout)


async def _served(client: Client, ref: ResourceRef, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await client.list(ref, kind.NAMESPACE, limit=1)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
                await asyncio.sleep(0.05)
