"""The volume controller's decisions, without I/O."""

from __future__ import annotations

from typing import Any

from unistack.iaas.volume import decisions
from unistack.iaas.volume.decisions import Action
from unistack.iaas.volume.kinds import FINALIZER


def _volume(status: str, marked: bool = False, held: bool = True, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "v1", "finalizers": [FINALIZER] if held else []}
    if marked:
        metadata["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": spec, "status": {"status": status}}


def test_decide_by_status_and_deletion() -> None:
    assert decisions.decide(None) is Action.NOTHING
    assert decisions.decide(_volume("creating")) is Action.CREATE
    assert decisions.decide(_volume("extending")) is Action.EXTEND
    assert decisions.decide(_volume("available")) is Action.NOTHING
    assert decisions.decide(_volume("creating", marked=True)) is Action.TEAR_DOWN
    assert decisions.decide(_volume("deleting", marked=True, held=False)) is Action.NOTHING


def test_source_of_a_volume() -> None:
    assert decisions.source_of(_volume("creating")) is None
    assert decisions.source_of(_volume("creating", snapshot_id="s")) == "s"
    assert decisions.source_of(_volume("creating", source_volid="v")) == "v"
    assert decisions.source_of(_volume("creating", imageRef="i")) == "image:i"


def test_image_sizes_round_up_to_whole_gib() -> None:
    assert decisions.size_gb(None) == 1
    assert decisions.size_gb(1) == 1
    assert decisions.size_gb(1024**3) == 1
    assert decisions.size_gb(1024**3 + 1) == 2


def test_image_metadata_keeps_core_fields_and_properties_as_strings() -> None:
    image = {
        "id": "i",
        "name": "cirros",
        "size": 10,
        "min_disk": 1,
        "status": "active",
        "os_distro": "cirros",
        "tags": ["x"],
        "hw_qemu_guest_agent": True,
    }
    found = decisions.image_metadata(image)
    assert found == {
        "image_id": "i",
        "image_name": "cirros",
        "size": "10",
        "min_disk": "1",
        "os_distro": "cirros",
        "hw_qemu_guest_agent": "True",
    }


def test_at_rest_status_follows_attachment() -> None:
    volume = _volume("extending")
    assert decisions.at_rest_status(volume) == "available"
    volume["status"]["attach_status"] = "attached"
    assert decisions.at_rest_status(volume) == "in-use"


def test_extra_specs_must_match_the_backend_capabilities() -> None:
    capabilities = {"volume_backend_name": "fake-backend", "storage_protocol": "fake"}
    assert decisions.unmatched_specs({}, capabilities) == []
    matching = {"volume_backend_name": "fake-backend", "capabilities:storage_protocol": "<is> fake"}
    assert decisions.unmatched_specs(matching, capabilities) == []
    assert decisions.unmatched_specs({"tier": "gold", "hw:cpu": "2"}, capabilities) == []
    wrong = {"storage_protocol": "iSCSI", "capabilities:vendor_name": "x"}
    assert decisions.unmatched_specs(wrong, capabilities) == [
        "storage_protocol",
        "capabilities:vendor_name",
    ]


def test_a_provisioned_object_reset_to_creating_is_left_alone() -> None:
    volume = _volume("creating")
    volume["status"]["provisioned"] = True
    assert decisions.decide(volume) is Action.NOTHING
