"""Hot-plugging a running VM's disks and NICs over QMP (`unistack.dataplane.qemu`).

A device is a backend (a block node for a volume's file, a netdev on a tap) and the guest's
virtio device on it: attached with the backend's add then `device_add` (the backend deleted
again when the device fails), detached with `device_del` (the guest lets go through ACPI)
then the backend's delete. `plug_difference` brings a running guest's devices from what it
was started with to what it should have (a VM resumed from a suspend, with volumes or
interfaces attached or detached meanwhile).
"""

from __future__ import annotations

import contextlib
from typing import Any

from unistack.dataplane import qemuargs, qmp
from unistack.dataplane.instances import Disk, InstanceError, InstanceSpec, Nic
from unistack.dataplane.qemuargs import InstancePaths

DETACH_TIMEOUT_S = 10.0

# A hot-plugged device is a backend (a block node, a netdev) and the guest's device on it;
# (command, arguments) say how to add or delete the backend.
QmpCall = tuple[str, dict[str, Any]]


def _disk_backend(disk: Disk) -> tuple[QmpCall, QmpCall]:
    node, _ = qemuargs.disk_names(disk.volume_id)
    return ("blockdev-add", qemuargs.blockdev(disk)), ("blockdev-del", {"node-name": node})


def _nic_backend(nic: Nic) -> tuple[QmpCall, QmpCall]:
    net, _ = qemuargs.nic_names(nic)
    return ("netdev_add", qemuargs.netdev(nic)), ("netdev_del", {"id": net})


async def _hotplug(
    paths: InstancePaths, backend: tuple[QmpCall, QmpCall], device: dict[str, Any], what: str
) -> None:
    """The backend, then the device on it; the backend deleted again when the device fails."""
    add, delete = backend
    try:
        async with qmp.connect(paths.qmp) as monitor:
            await monitor.execute(*add)
            try:
                await monitor.execute("device_add", device)
            except qmp.QmpError:
                await monitor.execute(*delete)
                raise
    except qmp.QmpError as error:
        raise InstanceError(f"attach {what}: {error}") from None


async def _unplug(paths: InstancePaths, device: str, delete: QmpCall, what: str) -> None:
    """The device out of the guest (it acknowledges), then its backend (`delete`)."""
    try:
        async with qmp.connect(paths.qmp) as monitor:
            await _delete_device(monitor, device)
            with contextlib.suppress(qmp.QmpError):  # gone already when never attached
                await monitor.execute(*delete)
    except qmp.QmpError as error:
        raise InstanceError(f"detach {what}: {error}") from None


async def _delete_device(monitor: qmp.Monitor, device: str) -> None:
    """`device_del`, then the guest's release of it (ACPI); a device not there is fine."""
    with monitor.events(["DEVICE_DELETED"]) as events:
        try:
            await monitor.execute("device_del", {"id": device})
        except qmp.QmpError as error:
            if "not found" not in str(error):
                raise
            return
        if await monitor.next_event(events, DETACH_TIMEOUT_S, {"device": device}) is None:
            raise qmp.QmpError("the guest did not release the device")


async def plug_disk(paths: InstancePaths, disk: Disk) -> None:
    await _hotplug(paths, _disk_backend(disk), qemuargs.disk_device(disk), disk.volume_id)


async def unplug_disk(paths: InstancePaths, volume_id: str) -> None:
    node, device = qemuargs.disk_names(volume_id)
    await _unplug(paths, device, ("blockdev-del", {"node-name": node}), volume_id)


async def plug_nic(paths: InstancePaths, nic: Nic) -> None:
    what = f"interface {nic.port_id}"
    await _hotplug(paths, _nic_backend(nic), qemuargs.nic_device(nic), what)


async def unplug_nic(paths: InstancePaths, nic: Nic) -> None:
    _, device = qemuargs.nic_names(nic)
    _, delete = _nic_backend(nic)
    await _unplug(paths, device, delete, f"interface {nic.port_id}")


async def plug_difference(
    paths: InstancePaths,
    then: tuple[InstanceSpec, list[Disk]],
    now: tuple[InstanceSpec, list[Disk]],
) -> None:
    """The running guest rid of the disks and NICs of `then` that `now` has not, and given
    those of `now` it lacks; what is already as it should be is left (so it can be asked
    again after a failure part way)."""
    (spec_then, disks_then), (spec_now, disks_now) = then, now
    present = await devices(paths)
    has = {disk.volume_id for disk in disks_now}
    for disk in disks_then:
        if disk.volume_id not in has and qemuargs.disk_names(disk.volume_id)[1] in present:
            await unplug_disk(paths, disk.volume_id)
    for disk in disks_now:
        if qemuargs.disk_names(disk.volume_id)[1] not in present:
            await plug_disk(paths, disk)
    ports = {nic.port_id for nic in spec_now.nics}
    for nic in spec_then.nics:
        if nic.port_id not in ports and qemuargs.nic_names(nic)[1] in present:
            await unplug_nic(paths, nic)
    for nic in spec_now.nics:
        if qemuargs.nic_names(nic)[1] not in present:
            await plug_nic(paths, nic)


async def devices(paths: InstancePaths) -> set[str]:
    """The ids of the devices the running guest has (`-device` and `device_add` ones)."""
    try:
        async with qmp.connect(paths.qmp) as monitor:
            listed = await monitor.execute("qom-list", {"path": "/machine/peripheral"})
    except qmp.QmpError as error:
        raise InstanceError(f"{paths.dir.name}: {error}") from None
    return {str(item["name"]) for item in listed if str(item.get("type", "")).startswith("child<")}
