"""What the volume controller does with a backup, and how a restore into a new volume ends:
pure decisions, without I/O."""

from __future__ import annotations

from typing import Any

from unistack.iaas.volume import decisions
from unistack.iaas.volume.decisions import Action
from unistack.iaas.volume.kinds import FINALIZER


def _obj(status: str, *, marked: bool = False, held: bool = True, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "b1", "finalizers": [FINALIZER] if held else []}
    if marked:
        metadata["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {}, "status": {"status": status, **extra}}


def test_a_backup_is_taken_once_restored_while_asked_and_torn_down_when_marked() -> None:
    assert decisions.decide_backup(None) is Action.NOTHING
    assert decisions.decide_backup(_obj("creating")) is Action.CREATE
    assert decisions.decide_backup(_obj("creating", provisioned=True)) is Action.NOTHING
    restoring = _obj("restoring", restore={"volume_id": "v1", "new": True})
    assert decisions.decide_backup(restoring) is Action.RESTORE
    assert decisions.decide_backup(_obj("restoring")) is Action.NOTHING  # reset meanwhile
    assert decisions.decide_backup(_obj("available")) is Action.NOTHING
    assert decisions.decide_backup(_obj("deleting", marked=True)) is Action.TEAR_DOWN
    assert decisions.decide_backup(_obj("deleting", marked=True, held=False)) is Action.NOTHING


def test_a_restore_into_a_new_volume_ends_with_the_volume() -> None:
    assert decisions.restored_volume_status(_obj("creating")) is None
    assert decisions.restored_volume_status(_obj("available")) == "available"
    assert decisions.restored_volume_status(_obj("error")) == "error"
    assert decisions.restored_volume_status(None) == "error"
    assert decisions.restored_volume_status(_obj("creating", marked=True)) == "error"
