"""The local-path provisioner with the volume binder, against the real API server in-process:
a claim gets the default class, a volume and a directory; deleting it removes both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from tests.integration.test_volumebinding_controller import claim, has_phase
from unistack.client.api import Client, Invalid, NotFound
from unistack.client.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from unistack.kube import provisioner
from unistack.kube.provisioner import LocalPathProvisioner
from unistack.kube.volumebinding import VolumeBindingController

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


async def gone(client: Client, name: str) -> bool:
    try:
        await client.get(PERSISTENTVOLUMES, name)
    except NotFound:
        return True
    return False


async def test_a_claim_without_a_class_gets_a_local_volume_removed_with_it(
    client: Client, tmp_path: Path
) -> None:
    root = tmp_path / "volumes"
    async with running(LocalPathProvisioner(client, root), VolumeBindingController(client)):

        async def registered() -> bool:
            return bool((await client.list(STORAGECLASSES))["items"])

        await eventually(registered)
        local = await client.get(STORAGECLASSES, "local-path")
        assert provisioner.is_default(local) and local["provisioner"] == "unistack.io/local-path"
        created = await client.create(PERSISTENTVOLUMECLAIMS, claim("data", "2Gi"))
        await eventually(has_phase(client, PERSISTENTVOLUMECLAIMS, "data", "Bound", "default"))
        bound = await client.get(PERSISTENTVOLUMECLAIMS, "data", "default")
        name = f"pvc-{created['metadata']['uid']}"
        assert bound["spec"]["storageClassName"] == "local-path"
        assert bound["spec"]["volumeName"] == name
        assert bound["status"]["capacity"] == {"storage": "2Gi"}
        volume = await client.get(PERSISTENTVOLUMES, name)
        assert volume["spec"]["hostPath"] == {"path": str(root / name), "type": "DirectoryOrCreate"}
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert (root / name).is_dir()
        (root / name / "file").write_text("kept until the claim goes")
        await client.delete(PERSISTENTVOLUMECLAIMS, "data", "default")
        await eventually(lambda: gone(client, name))
        assert not (root / name).exists()


async def test_claims_of_other_classes_and_retained_volumes_are_left_alone(
    client: Client, tmp_path: Path
) -> None:
    root = tmp_path / "volumes"
    keep = {**provisioner.storage_class(), "reclaimPolicy": "Retain"}
    keep["metadata"] = {"name": "keep"}
    await client.create(STORAGECLASSES, keep)
    other = claim("elsewhere", "1Gi")
    other["spec"]["storageClassName"] = "nfs"
    await client.create(PERSISTENTVOLUMECLAIMS, other)
    kept = claim("kept", "1Gi")
    kept["spec"]["storageClassName"] = "keep"
    created = await client.create(PERSISTENTVOLUMECLAIMS, kept)
    async with running(LocalPathProvisioner(client, root), VolumeBindingController(client)):
        await eventually(has_phase(client, PERSISTENTVOLUMECLAIMS, "kept", "Bound", "default"))
        name = f"pvc-{created['metadata']['uid']}"
        await client.delete(PERSISTENTVOLUMECLAIMS, "kept", "default")
        await eventually(has_phase(client, PERSISTENTVOLUMES, name, "Released"))
        assert (root / name).is_dir()  # Retain: the data stays
        elsewhere = await client.get(PERSISTENTVOLUMECLAIMS, "elsewhere", "default")
        assert elsewhere["status"]["phase"] == "Pending"
        assert not elsewhere["spec"].get("volumeName")


async def test_storage_class_fields_are_checked_and_immutable(client: Client) -> None:
    with pytest.raises(Invalid) as error:
        await client.create(STORAGECLASSES, {**provisioner.storage_class(), "provisioner": ""})
    assert "provisioner" in error.value.message
    created = await client.create(STORAGECLASSES, provisioner.storage_class())
    assert created["volumeBindingMode"] == "Immediate"
    created["reclaimPolicy"] = "Retain"
    with pytest.raises(Invalid):
        await client.update(STORAGECLASSES, created)


async def test_a_new_claim_naming_no_class_gets_the_default_one(client: Client) -> None:
    """The DefaultStorageClass admission plugin: only a claim with no storageClassName at all
    gets the default; "" (no class) and a named class are kept; no default, nothing set."""
    pvcs = PERSISTENTVOLUMECLAIMS
    before = await client.create(pvcs, claim("early", "1Mi"))
    assert "storageClassName" not in before["spec"]  # no default class yet
    plain = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "x.io/y"}
    await client.create(STORAGECLASSES, {**plain, "metadata": {"name": "plain"}})
    default = provisioner.storage_class()
    default["metadata"]["annotations"] = {provisioner.DEFAULT_CLASS: "true"}
    await client.create(STORAGECLASSES, default)
    made = await client.create(pvcs, claim("any", "1Mi"))
    assert made["spec"]["storageClassName"] == provisioner.CLASS_NAME
    none = claim("none", "1Mi")
    none["spec"]["storageClassName"] = ""
    assert (await client.create(pvcs, none))["spec"]["storageClassName"] == ""
    named = claim("named", "1Mi")
    named["spec"]["storageClassName"] = "plain"
    assert (await client.create(pvcs, named))["spec"]["storageClassName"] == "plain"
