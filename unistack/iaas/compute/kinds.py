"""The compute kinds, group `compute.unistack.io`, and how a server's state reads.

Servers, keypairs, server groups, instance actions and migrations (one per resize: its
source and destination, old and new flavor, and a `status` the controller moves from
`pre-migrating` to `finished`, then `confirmed` or `reverted`) live in their project's
namespace;
flavors, quota sets and host aggregates are cluster-scoped (a flavor is shared; a quota
set is named by its project id). `metadata.name` is the OpenStack id.

A `Server`'s spec is what its owner asked for (name, image, flavor, networks, metadata...);
its status is what the API and the controller (`controller.py`) record: Nova's `vm_state`,
`task_state` and `power_state`, the host and the placement-style allocation, the ports and
addresses, the fault, the fake driver's console, and `pending`: the one action the API
accepted and the controller has not carried out yet (Nova refuses a second while a task is
under way). `display_status` turns those into the API's `status`, as Nova's
`common.status_from_state` does.
"""

from __future__ import annotations

import zlib
from typing import Any

from unistack.iaas.crds import Kind
from unistack.runtime.informer import IndexFunc

GROUP = "compute.unistack.io"
FINALIZER = "compute.unistack.io/server"

SERVERS = Kind(
    GROUP,
    "Server",
    "servers",
    namespaced=True,
    columns=(
        ("Display-Name", ".spec.name"),
        ("VM-State", ".status.vm_state"),
        ("Host", ".status.host"),
    ),
)
FLAVORS = Kind(
    GROUP,
    "Flavor",
    "flavors",
    columns=(("Display-Name", ".spec.name"), ("RAM", ".spec.ram"), ("VCPUs", ".spec.vcpus")),
)
KEYPAIRS = Kind(GROUP, "Keypair", "keypairs", namespaced=True)
SERVER_GROUPS = Kind(GROUP, "ServerGroup", "servergroups", namespaced=True)
INSTANCE_ACTIONS = Kind(
    GROUP,
    "InstanceAction",
    "instanceactions",
    namespaced=True,
    columns=(("Action", ".spec.action"), ("Server", ".spec.instance_uuid")),
)
MIGRATIONS = Kind(
    GROUP,
    "Migration",
    "migrations",
    namespaced=True,
    columns=(
        ("Type", ".spec.migration_type"),
        ("Server", ".spec.instance_uuid"),
        ("Status", ".status.status"),
    ),
)
QUOTA_SETS = Kind(GROUP, "QuotaSet", "quotasets", columns=(("Instances", ".spec.instances"),))
AGGREGATES = Kind(GROUP, "Aggregate", "aggregates", columns=(("Zone", ".spec.availability_zone"),))

ALL = (
    SERVERS,
    FLAVORS,
    KEYPAIRS,
    SERVER_GROUPS,
    INSTANCE_ACTIONS,
    MIGRATIONS,
    QUOTA_SETS,
    AGGREGATES,
)

# A migration's status as Nova moves a resize through it (nova/objects/migration.py).
MIGRATION_PRE, MIGRATION_MIGRATING, MIGRATION_FINISHED = "pre-migrating", "migrating", "finished"
MIGRATION_CONFIRMED, MIGRATION_REVERTED, MIGRATION_ERROR = "confirmed", "reverted", "error"
# a live migration's: queued by the API, running while it copies, post-migrating once the
# guest is paused for the switch, completed on its new host
MIGRATION_QUEUED, MIGRATION_RUNNING = "queued", "running"
MIGRATION_POST, MIGRATION_COMPLETED = "post-migrating", "completed"
# how far a live migration's copy is, in bytes, as Nova's server migration shows it
MIGRATION_PROGRESS = tuple(
    f"{what}_{count}_bytes"
    for what in ("memory", "disk")
    for count in ("total", "processed", "remaining")
)

# Nova's vm states, task states and power states (nova/compute/{vm,task,power}_states.py).
BUILDING, ACTIVE, STOPPED, RESIZED, ERROR = "building", "active", "stopped", "resized", "error"
PAUSED, SUSPENDED, RESCUED = "paused", "suspended", "rescued"
SHELVED, SHELVED_OFFLOADED = "shelved", "shelved_offloaded"
NOSTATE, RUNNING, SHUTDOWN = 0, 1, 4
POWER_PAUSED, POWER_SUSPENDED = 3, 7  # power states, beside the vm states of those names

_TASK_STATUS = {
    "rebooting": "REBOOT",
    "reboot_pending": "REBOOT",
    "reboot_started": "REBOOT",
    "rebooting_hard": "HARD_REBOOT",
    "reboot_pending_hard": "HARD_REBOOT",
    "reboot_started_hard": "HARD_REBOOT",
    "rebuilding": "REBUILD",
    "rebuild_spawning": "REBUILD",
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_finish": "RESIZE",
    "resize_reverting": "REVERT_RESIZE",
    "migrating": "MIGRATING",
}
_VM_STATUS = {
    BUILDING: "BUILD",
    ACTIVE: "ACTIVE",
    STOPPED: "SHUTOFF",
    RESIZED: "VERIFY_RESIZE",
    ERROR: "ERROR",
    PAUSED: "PAUSED",
    SUSPENDED: "SUSPENDED",
    RESCUED: "RESCUE",
    SHELVED: "SHELVED",
    SHELVED_OFFLOADED: "SHELVED_OFFLOADED",
    "deleted": "DELETED",
}


def display_status(vm_state: str, task_state: str | None) -> str:
    if vm_state in (ACTIVE, STOPPED) and task_state in _TASK_STATUS:
        return _TASK_STATUS[task_state]
    if vm_state == RESIZED and task_state == "resize_reverting":
        return "REVERT_RESIZE"
    return _VM_STATUS.get(vm_state, "UNKNOWN")


def integer_id(text: str) -> int:
    """A stable positive integer for an object Nova numbers (keypairs, hypervisors)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def by_instance(obj: dict[str, Any]) -> list[str]:
    return [str((obj.get("spec") or {}).get("instance_uuid") or "")]


def by_group(obj: dict[str, Any]) -> list[str]:
    group = (obj.get("spec") or {}).get("group_id")
    return [str(group)] if group else []


# The event Nova's compute manager records for an instance action (`os-instance-actions`),
# by action; one not listed is `compute_<action>` (attach_interface, detach_volume, ...).
ACTION_EVENTS = {
    "create": "compute__do_build_and_run_instance",
    "delete": "compute_terminate_instance",
    "reboot": "compute_reboot_instance",
    "stop": "compute_stop_instance",
    "start": "compute_start_instance",
    "rebuild": "compute_rebuild_instance",
    "resize": "compute_resize_instance",
    "migrate": "compute_resize_instance",  # a cold migration is a resize to another host
    "live-migration": "compute_live_migration",
    "confirmResize": "compute_confirm_resize",
    "revertResize": "compute_revert_resize",
    "createImage": "compute_snapshot_instance",
    "shelve": "compute_shelve_instance",
    "unshelve": "compute_unshelve_instance",
    "pause": "compute_pause_instance",
    "unpause": "compute_unpause_instance",
    "suspend": "compute_suspend_instance",
    "resume": "compute_resume_instance",
    "rescue": "compute_rescue_instance",
    "unrescue": "compute_unrescue_instance",
}


def action_event(
    action: dict[str, Any], host: Any, finish_time: str, result: str, message: str | None = None
) -> dict[str, Any]:
    """The one event that finishes instance action `action` (its spec), on `host`."""
    name = str(action.get("action") or "")
    return {
        "host": host,  # where it ran (2.62's hostId)
        "project_id": action.get("project_id"),
        "event": ACTION_EVENTS.get(name, f"compute_{name}"),
        "start_time": action.get("start_time"),
        "finish_time": finish_time,
        "result": result,
        "traceback": message,
    }


def by_host(obj: dict[str, Any]) -> list[str]:
    host = (obj.get("status") or {}).get("host")
    return [str(host)] if host else []


def by_owner(obj: dict[str, Any]) -> list[str]:
    """A keypair's `user_id/name` (names are unique per user)."""
    spec = obj.get("spec") or {}
    return [f"{spec.get('user_id')}/{spec.get('name')}"]


INDEXERS: dict[Kind, dict[str, IndexFunc]] = {
    SERVERS: {"group": by_group, "host": by_host},
    INSTANCE_ACTIONS: {"instance": by_instance},
    MIGRATIONS: {"instance": by_instance},
    KEYPAIRS: {"owner": by_owner},
}
