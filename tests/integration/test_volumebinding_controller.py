"""The volume binder against the real API server, in-process.

`VolumeBindingController` runs as a task over `AsgiTransport(ApiServer(SqliteStore(...)))`;
the test creates PersistentVolumes and claims and waits for the bindings, as `kubectl` would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.client.api import Client, NotFound
from unistack.client.resources import (
    EVENTS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    ResourceRef,
)
from unistack.kube.volumebinding import BIND_COMPLETED, NO_VOLUMES, VolumeBindingController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


def volume(name: str, size: str, policy: str = "Retain") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": f"/data/{name}"},
        },
    }


def claim(name: str, size: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def has_phase(
    client: Client, ref: ResourceRef, name: str, phase: str, namespace: str | None = None
) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the object's `status.phase` is `phase`."""

    async def check() -> bool:
        obj = await client.get(ref, name, namespace)
        return bool(obj.get("status", {}).get("phase") == phase)

    return check


async def test_a_claim_binds_to_the_smallest_volume_that_fits_both_ways(client: Client) -> None:
    await client.create(PERSISTENTVOLUMES, volume("small", "1Gi"))
    await client.create(PERSISTENTVOLUMES, volume("big", "5Gi"))
    created = await client.create(PERSISTENTVOLUMECLAIMS, claim("data", "2Gi"))
    async with running(VolumeBindingController(client)):
        await eventually(has_phase(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
        await eventually(has_phase(client, PERSISTENTVOLUMES, "small", "Available"))
    pvc = await client.get(PERSISTENTVOLUMECLAIMS, "data", "default")
    assert pvc["spec"]["volumeName"] == "big"
    assert pvc["metadata"]["annotations"][BIND_COMPLETED] == "yes"
    assert pvc["status"]["capacity"] == {"storage": "5Gi"}
    assert pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    pv = await client.get(PERSISTENTVOLUMES, "big")
    assert pv["status"]["phase"] == "Bound"
    ref = pv["spec"]["claimRef"]
    assert ref["kind"] == "PersistentVolumeClaim" and ref["apiVersion"] == "v1"
    assert (ref["namespace"], ref["name"]) == ("default", "data")
    assert ref["uid"] == created["metadata"]["uid"]
    assert ref["resourceVersion"]


async def test_a_claim_too_big_waits_then_binds_to_a_new_volume(client: Client) -> None:
    await client.create(PERSISTENTVOLUMES, volume("small", "1Gi"))
    await client.create(PERSISTENTVOLUMECLAIMS, claim("data", "10Gi"))
    async with running(VolumeBindingController(client)):

        async def failed_binding() -> bool:
            events = (await client.list(EVENTS, "default"))["items"]
            return any(
                e["reason"] == "FailedBinding" and e["message"] == NO_VOLUMES for e in events
            )

        await eventually(failed_binding)
        assert await has_phase(client, PERSISTENTVOLUMECLAIMS, "data", "Pending", "default")()
        await client.create(PERSISTENTVOLUMES, volume("huge", "20Gi"))
        await eventually(has_phase(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
    pvc = await client.get(PERSISTENTVOLUMECLAIMS, "data", "default")
    assert pvc["spec"]["volumeName"] == "huge"


async def test_deleting_a_bound_claim_releases_or_deletes_its_volume(client: Client) -> None:
    await client.create(PERSISTENTVOLUMES, volume("kept", "1Gi"))
    await client.create(PERSISTENTVOLUMES, volume("scratch", "5Gi", policy="Delete"))
    await client.create(PERSISTENTVOLUMECLAIMS, claim("small", "1Gi"))
    await client.create(PERSISTENTVOLUMECLAIMS, claim("large", "3Gi"))
    async with running(VolumeBindingController(client)):
        for name in ("kept", "scratch"):
            await eventually(has_phase(client, PERSISTENTVOLUMES, name, "Bound"))
        await client.delete(PERSISTENTVOLUMECLAIMS, "small", "default")
        await client.delete(PERSISTENTVOLUMECLAIMS, "large", "default")
        await eventually(has_phase(client, PERSISTENTVOLUMES, "kept", "Released"))

        async def scratch_gone() -> bool:
            try:
                await client.get(PERSISTENTVOLUMES, "scratch")
            except NotFound:
                return True
            return False

        await eventually(scratch_gone)
