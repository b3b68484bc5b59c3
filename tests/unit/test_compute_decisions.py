"""The compute controller's pure parts and the server state mapping, without I/O."""

from __future__ import annotations

from typing import Any

from unistack.iaas.compute import kinds
from unistack.iaas.compute.controller import decide, wanted_resources
from unistack.iaas.compute.scheduler import Resources


def server(status: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "s1", "namespace": "project-p"}
    if deleting:
        metadata["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {}, "status": status}


def test_decide_orders_teardown_build_and_pending_actions() -> None:
    assert decide(server({"vm_state": "building"}, deleting=True)) == "teardown"
    assert decide(server({"vm_state": "building"})) == "build"
    assert decide(server({"vm_state": "building", "host": "hv"})) == ""
    active = {"vm_state": "active", "host": "hv"}
    assert decide(server(active)) == ""
    assert decide(server({**active, "pending": {"action": "reboot"}})) == "reboot"
    assert decide(server({**active, "pending": None})) == ""


def test_flavor_resources_count_ephemeral_and_swap() -> None:
    flavor = {"vcpus": 2, "ram": 1024, "disk": 10, "ephemeral": 5, "swap": 1536}
    assert wanted_resources(flavor) == Resources(2, 1024, 17)
    assert wanted_resources({}) == Resources(0, 0, 0)


def test_display_status_follows_nova() -> None:
    assert kinds.display_status("building", "scheduling") == "BUILD"
    assert kinds.display_status("active", None) == "ACTIVE"
    assert kinds.display_status("active", "rebooting") == "REBOOT"
    assert kinds.display_status("active", "rebooting_hard") == "HARD_REBOOT"
    assert kinds.display_status("stopped", None) == "SHUTOFF"
    assert kinds.display_status("active", "rebuilding") == "REBUILD"
    assert kinds.display_status("active", "resize_prep") == "RESIZE"
    assert kinds.display_status("resized", None) == "VERIFY_RESIZE"
    assert kinds.display_status("resized", "resize_reverting") == "REVERT_RESIZE"
    assert kinds.display_status("error", None) == "ERROR"
    assert kinds.display_status("active", "powering-off") == "ACTIVE"
    assert kinds.display_status("rescued", None) == "RESCUE"
