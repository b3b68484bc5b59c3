"""The `qemu` instance driver: a server as a real VM, one QEMU process per server.

Implements `unistack.dataplane.instances.InstanceDriver` (hypervisor type `qemu`). Each
instance is a directory `<root>/<server id>/`:

    spec.json      the InstanceSpec it was spawned with (start boots from it again)
    disks.json     the volumes attached now, so a restart boots with them
    root.qcow2     the root disk: a qcow2 overlay on the image file, grown to root_gb
    disk.eph0      the flavor's ephemeral disk, blank ext4, after the root disk (`ephemeral`)
    disk.config    the config drive, when the server has one: ISO 9660 on an IDE CD-ROM
                   (`configdrive`), made at spawn, as Nova makes it
    qemu.pid       QEMU's pid (`-daemonize -pidfile`: the VM outlives the agent)
    qmp.sock       the QMP monitor (`unistack.dataplane.qmp`)
    console.sock   the serial console, for an interactive client
    console.log    everything the serial console printed, kept across boots
    memory.state   a suspended guest's memory and devices, with suspended.json
    detached-*     while a resume runs: an empty stand-in for a volume detached during the
                   suspend whose file is gone (the saved device needs a file to load)
    disk.rescue    a rescued guest's boot disk, an overlay on the rescue image, with
                   rescue.json (what it boots) while it is rescued

so a new driver object (an agent restart) finds every instance and its state from disk.
Acceleration is KVM where `/dev/kvm` is backed by hardware virtualisation (kvm_intel or
kvm_amd), else TCG — this project's hosts are PVM guests whose /dev/kvm boots no stock kernel.
Images that boot directly (kernel + initrd, like the built-in tiny VM of
`unistack.images.vmimage`) get the server's identity on the command line
(`unistack.id/hostname/ip/gw/dns/mtu`, read by `unistack.images.vminit`). NICs are the taps
the network side made (`Nic.device`), opened by name, in `spec.netns_path` when given.

Power: stop = ACPI power button (QMP `system_powerdown`, the guest's acpid powers off, QEMU
exits), then `quit`, then SIGKILL after `timeout`. Soft reboot = Ctrl-Alt-Del (QMP
`send-key`; busybox init and systemd both reboot on it, unlike the ACPI button, which has no
"reboot" event), with `system_reset` when the guest has not reset within the timeout; hard
reboot = `system_reset`. Volumes are hot-plugged as virtio-blk (`blockdev-add` +
`device_add`, always format raw — probing a guest-writable file is unsafe) and unplugged
with `device_del` (the guest acknowledges through ACPI) + `blockdev-del`. An interface
attached to a running VM is hot-plugged the same way: `netdev_add` on its tap, then a
virtio-net `device_add`; detached with `device_del` + `netdev_del` (`qemudevices`). Both
are kept in spec.json, so the next boot has the VM's NICs as they are now.

Pause = QMP `stop` (and `cont`). Suspend = libvirt's managed save: the guest stopped, its
memory and device state migrated into memory.state (`qemumigrate.save`) beside
suspended.json (the spec, disks, their sizes and PCI slots it ran with), then QEMU quits;
the state says SUSPENDED while memory.state is there. Resume starts QEMU with those devices
at those slots on `-incoming defer`, loads the state and runs it, then hot-plugs what was
attached or detached meanwhile. Any fresh boot (start, hard reboot) drops a saved state.

Rescue, as libvirt rescues for Nova: the guest shut down like `stop`, then booted from
disk.rescue (vda, a fresh overlay on the rescue image, with that image's kernel) with its own
root disk as vdb and its config drive, without its volumes or ephemeral disk; every boot is
that one until unrescue, which ends the rescue guest, drops disk.rescue and boots the
instance as it was. A stable device rescue (the image's hw_rescue_device and hw_rescue_bus,
Nova 2.87) keeps every disk, volumes too, where it was, and adds disk.rescue last on its bus
(`qemuargs.rescue_device`); so a server booted from a volume can be rescued.

Live migration (`instances.LiveMigration`), as libvirt drives QEMU for Nova's block
migration: the destination starts QEMU with the source's devices at the source's PCI slots
(`slots`, from `query-pci`: hot-plugged devices sit wherever a slot was free) paused on
`-incoming defer`, with its own root overlay on its own copy of the image and a blank
ephemeral disk exported over NBD; the source mirrors each local disk into those exports
(`blockdev-mirror`, sync `top`: only what the guest wrote), migrates its memory once the
mirrors are READY, pauses before the switch-over (`pause-before-switchover`) to complete the
mirrors on a quiet disk, then switches over; the destination stops its NBD server and
resumes. Volumes are not copied: each host reaches them itself. Listeners take the first
free port of libvirt's migration range on the destination's address on the hosts' network;
the streams are plain TCP there, as Nova's default `live_migration_scheme` is. Those QMP
steps are `unistack.dataplane.qemumigrate`'s.

The command line is decided in `unistack.dataplane.qemuargs`; `QemuInstances` runs it.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from stat import S_ISBLK
from typing import Literal

from unistack.dataplane import configdrive, ephemeral, qemuargs, qemudevices, qemumigrate, qmp
from unistack.dataplane.instances import (
    Disk,
    DiskFiles,
    Incoming,
    InstanceError,
    InstanceSpec,
    Nic,
    NotSupported,
    PowerState,
    RescueBoot,
    decode_files,
    encode_files,
    rescue_from_json,
    rescue_spec,
    rescue_to_json,
    with_nic,
    without_nic,
    write_atomic,
)
from unistack.dataplane.qemuargs import InstancePaths

QEMU_IMG = "qemu-img"
SOFT_REBOOT_TIMEOUT_S = 30.0
LAUNCH_TIMEOUT_S = 30.0
DETACHED_PREFIX = "detached-"  # a stand-in for a gone volume, while a resume loads its state
STAND_IN_SIZE = 1 << 20  # bytes, for a volume whose size the saved state does not say
CTRL_ALT_DELETE = [{"type": "qcode", "data": key} for key in ("ctrl", "alt", "delete")]
STATUS_POWER = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,
    "shutdown": PowerState.SHUTDOWN,
    "guest-panicked": PowerState.CRASHED,
    "internal-error": PowerState.CRASHED,
    "io-error": PowerState.PAUSED,
    "prelaunch": PowerState.PAUSED,
    "inmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


# --- pure decisions ---------------------------------------------------------------------


def power_state(status: str) -> PowerState:
    """Nova's power state for a QMP `query-status` status."""
    return STATUS_POWER.get(status, PowerState.RUNNING)


def console_tail(text: str, lines: int | None) -> list[str]:
    """The console's lines (serial CR-LF endings folded), the last `lines` when given."""
    all_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if all_lines and all_lines[-1] == "":
        all_lines.pop()
    return all_lines[-lines:] if lines else all_lines


def spec_to_json(spec: InstanceSpec) -> bytes:
    data = asdict(spec)
    data["user_data"] = base64.b64encode(spec.user_data).decode()
    data["config_drive"] = encode_files(spec.config_drive)
    data["personality"] = encode_files(spec.personality)
    return json.dumps(data, default=str, indent=1).encode()


def spec_from_json(raw: bytes) -> InstanceSpec:
    data = json.loads(raw)
    for key in ("image_file", "kernel", "initrd"):
        data[key] = Path(data[key]) if data.get(key) else None
    data["image_layers"] = tuple(Path(path) for path in data.get("image_layers", ()))
    data["nics"] = tuple(
        Nic(**{**nic, "fixed_ips": tuple(nic["fixed_ips"]),
               "dns_nameservers": tuple(nic["dns_nameservers"])})
        for nic in data.get("nics", ())
    )  # fmt: skip
    data["disks"] = tuple(Disk(**disk) for disk in data.get("disks", ()))
    data["public_keys"] = tuple(data.get("public_keys", ()))
    data["user_data"] = base64.b64decode(data.get("user_data", ""))
    data["personality"] = decode_files(data.get("personality"))
    data["config_drive"] = decode_files(data.get("config_drive"))
    return InstanceSpec(**data)


def is_instance_process(cmdline: bytes, pidfile: Path) -> bool:
    """Whether a /proc/<pid>/cmdline is the QEMU of this instance (not a reused pid)."""
    return str(pidfile).encode() in cmdline.split(b"\0")


# --- the driver -------------------------------------------------------------------------


class QemuInstances:
    """VMs under `root`, one directory each (see the module docstring)."""

    hypervisor_type = "qemu"

    def __init__(
        self, root: Path, qemu_binary: str = qemuargs.QEMU, accel: str | None = None
    ) -> None:
        self.root = root
        self.qemu_binary = qemu_binary
        self.accel = accel or ("kvm" if qemuargs.kvm_usable() else "tcg")
        self._locks: dict[str, asyncio.Lock] = {}
        self._underway: dict[str, qemumigrate.Underway] = {}

    def paths(self, server_id: str) -> InstancePaths:
        if not _ID.fullmatch(server_id):
            raise InstanceError(f"invalid server id {server_id!r}")
        return InstancePaths(self.root / server_id)

    def _lock(self, server_id: str) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    async def spawn(self, spec: InstanceSpec) -> None:
        paths = self.paths(spec.server_id)
        async with self._lock(spec.server_id):
            if _running_pid(paths):
                return
            paths.dir.mkdir(parents=True, exist_ok=True)
            _make_socket_dirs(paths)
            if spec.image_file and not paths.root_disk.exists():
                await _create_overlay(spec.image_file, paths.root_disk, spec.root_gb)
            elif spec.image_file:  # a disk that came from another host: its base is here
                await _rebase(paths.root_disk, spec.image_file)
            if spec.ephemeral_gb > 0:
                await asyncio.to_thread(ephemeral.ensure, paths.dir, spec.ephemeral_gb)
            if spec.config_drive:
                await asyncio.to_thread(
                    configdrive.build_iso, spec.config_drive, paths.config_drive
                )
            write_atomic(paths.spec, spec_to_json(spec))
            _write_disks(paths, spec.disks)
            await self._launch(paths, spec)

    async def start(self, server_id: str) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            if _running_pid(paths):
                return
            await self._launch(paths, _read_spec(paths))

    async def stop(self, server_id: str, timeout: float = 10.0) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            pid = _running_pid(paths)
            if pid is None:  # stopped, or suspended: its saved memory stays for `resume`
                return
            await _power_down(paths, pid, timeout)

    async def reboot(self, server_id: str, hard: bool) -> None:
        """A stopped guest is reset and runs (a soft reboot needs a running guest), as Nova
        reboots a paused one hard; a suspended one boots afresh, its saved memory dropped."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            if _running_pid(paths) is None:
                await self._launch(paths, _read_spec(paths))
                return
            try:
                async with qmp.connect(paths.qmp) as monitor:
                    stopped = not await _runs_here(monitor, server_id)
                    if not hard and not stopped and await _soft_reset(monitor):
                        return
                    await monitor.execute("system_reset")
                    if stopped:
                        await monitor.execute("cont")
            except qmp.QmpError as error:
                raise InstanceError(f"reboot {server_id}: {error}") from None

    async def pause(self, server_id: str) -> None:
        """The vCPUs stopped (QMP `stop`): the guest keeps its memory and answers nothing."""
        paths = self.paths(server_id)
        async with self._lock(server_id), _running_monitor(paths, NOT_RUNNING_NOW) as monitor:
            await monitor.execute("stop")

    async def unpause(self, server_id: str) -> None:
        """The vCPUs run again (`cont`), also after a live migration that failed late left
        the paused guest in `postmigrate` (QEMU 7.2 does); not when it moved away."""
        paths = self.paths(server_id)
        async with self._lock(server_id), _running_monitor(paths, NOT_RUNNING_NOW) as monitor:
            if not await _runs_here(monitor, server_id):
                await monitor.execute("cont")

    async def suspend(self, server_id: str) -> None:
        """libvirt's managed save, as Nova suspends a VM: the guest stopped, its memory and
        device state written to memory.state beside what it ran with (suspended.json: spec,
        disks, PCI slots), then QEMU quits; the disks stay. A save that fails is cancelled
        and the guest runs on as it did. Nothing when it is suspended already."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            if _running_pid(paths) is None and paths.memory_state.exists():
                return
            saving = _saving(paths)
            async with _running_monitor(paths, NOT_RUNNING_NOW) as monitor:
                if await qemumigrate.underway(monitor):
                    raise InstanceError(f"{server_id} is being migrated or saved already")
                slots = qemuargs.pci_slots(await monitor.execute("query-pci"))
                running = (await monitor.execute("query-status")).get("status") == "running"
                await monitor.execute("stop")
                try:
                    await qemumigrate.save(monitor, saving)
                except (qmp.QmpError, InstanceError) as error:
                    saving.unlink(missing_ok=True)
                    if running:
                        await monitor.execute("cont")
                    raise InstanceError(f"suspend {server_id}: {error}") from None
            disks = _read_disks(paths)
            saved = {
                "slots": slots,
                "spec": spec_to_json(_read_spec(paths)).decode(),
                "disks": [asdict(disk) for disk in disks],
                "sizes": {disk.volume_id: _size_of(disk.path) for disk in disks},
            }
            write_atomic(paths.suspended, json.dumps(saved).encode())
            os.replace(saving, paths.memory_state)
            pid = _running_pid(paths)
            if pid is not None:
                await _terminate(paths, pid)
            _remove_sockets(paths)

    async def resume(self, server_id: str) -> None:
        """A suspended guest's QEMU started again with the devices it was saved with, at
        the same slots (each volume opened where its file is now), its state loaded from
        memory.state and run; then the disks and NICs attached or detached since are
        hot-plugged to match, and only then are the saved files dropped. A volume detached
        meanwhile whose file is gone is given as an empty sparse file of its size (the
        device must be there for its state to load) until it is unplugged. A resume that
        fails keeps the saved files, to be asked again (one asked again finishes what the
        last began); a hard reboot boots afresh instead."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            try:
                if _running_pid(paths) is None:
                    if not paths.memory_state.exists():
                        raise InstanceError(f"{server_id} is not suspended: nothing to resume")
                    spec, disks, slots = _read_saved(paths)
                    # each volume where it is now: a connection made again may be elsewhere
                    now = {disk.volume_id: disk.path for disk in _read_disks(paths)}
                    disks = [_opened(paths, d, now.get(d.volume_id)) for d in disks]
                    await self._launch(paths, spec, slots=slots, incoming=True, disks=disks)
                elif not paths.suspended.exists():
                    return  # it runs
                await self._restored(paths)
            except InstanceError:
                pid = _running_pid(paths)
                if pid is not None and not paths.memory_state.exists():
                    raise  # loaded and running: only catching up on its devices failed
                if pid is not None:
                    await _kill(pid)
                raise
            finally:  # QEMU has unplugged a stand-in, or keeps it open, or has quit
                for stand_in in paths.dir.glob(f"{DETACHED_PREFIX}*"):
                    stand_in.unlink(missing_ok=True)

    async def _restored(self, paths: InstancePaths) -> None:
        """The waiting QEMU given its state (unless it has it), run, caught up on devices."""
        spec, disks, _ = _read_saved(paths)
        try:
            async with qmp.connect(paths.qmp) as monitor:
                if (await monitor.execute("query-status")).get("status") == "inmigrate":
                    await qemumigrate.load(monitor, paths.memory_state)
                if (await monitor.execute("query-status")).get("status") != "running":
                    await monitor.execute("cont")
        except qmp.QmpError as error:
            raise InstanceError(f"resume {paths.dir.name}: {error}") from None
        paths.memory_state.unlink(missing_ok=True)  # it runs from it now
        now = (_read_spec(paths), _read_disks(paths))
        await qemudevices.plug_difference(paths, (spec, disks), now)
        paths.suspended.unlink(missing_ok=True)

    async def rescue(self, server_id: str, boot: RescueBoot, timeout: float = 10.0) -> None:
        """The guest shut down (as `stop`) and booted from a new overlay on the rescue image,
        its own root disk as vdb (see the module docstring). A rescue that does not boot is
        undone: the guest boots from its own disk again when it was running."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            if paths.rescue.exists():
                if _running_pid(paths) is None:
                    await self._launch(paths, _read_spec(paths))
                return
            if boot.image_file is None:
                raise InstanceError(f"rescue {server_id}: the rescue image is not a disk image")
            if not paths.root_disk.exists() and not boot.stable:
                raise InstanceError(f"rescue {server_id}: it has no root disk of its own")
            try:
                qemuargs.rescue_device(paths.rescue_disk, boot.device or "disk", boot.bus)
            except ValueError as error:
                raise InstanceError(f"rescue {server_id}: {error}") from None
            if paths.memory_state.exists():
                raise InstanceError(f"rescue {server_id}: it is suspended")
            spec, pid = _read_spec(paths), _running_pid(paths)
            if pid is not None:
                await _power_down(paths, pid, timeout)
            try:
                await _create_overlay(boot.image_file, paths.rescue_disk, 0)
                write_atomic(paths.rescue, rescue_to_json(boot))
                await self._launch(paths, spec)
            except (InstanceError, OSError):
                _drop_rescue(paths)
                if pid is not None:
                    await self._launch(paths, spec)
                raise

    async def unrescue(self, server_id: str) -> None:
        """The rescue guest ended (as libvirt destroys it), disk.rescue dropped, and the
        instance booted from its own disks; when it is not rescued, booted if it is stopped
        (a retry)."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            if not paths.rescue.exists():  # an unrescue asked again boots it
                if _running_pid(paths) is None and not paths.memory_state.exists():
                    await self._launch(paths, _read_spec(paths))
                return
            pid = _running_pid(paths)
            if pid is not None:
                await _terminate(paths, pid)
                _remove_sockets(paths)
            _drop_rescue(paths)
            await self._launch(paths, _read_spec(paths))

    async def destroy(self, server_id: str) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            pid = _running_pid(paths)
            if pid is not None:
                await _kill(pid)
            shutil.rmtree(paths.dir, ignore_errors=True)
            _remove_sockets(paths)
        self._locks.pop(server_id, None)

    async def state(self, server_id: str) -> PowerState:
        paths = self.paths(server_id)
        if not paths.spec.exists():
            return PowerState.NOSTATE
        if _running_pid(paths) is None:
            return PowerState.SUSPENDED if paths.memory_state.exists() else PowerState.SHUTDOWN
        async with self._lock(server_id):
            try:
                async with qmp.connect(paths.qmp) as monitor:
                    status = await monitor.execute("query-status")
            except qmp.QmpError:
                return PowerState.RUNNING if _running_pid(paths) else PowerState.SHUTDOWN
        return power_state(str(status.get("status", "")))

    async def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(path.name for path in self.root.iterdir() if (path / "spec.json").exists())

    async def console_log(self, server_id: str, lines: int | None = None) -> builtins.list[str]:
        paths = self.paths(server_id)
        _require(paths)
        try:
            text = paths.console_log.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return []
        return console_tail(text, lines)

    async def attach_disk(self, server_id: str, disk: Disk) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            disks = _read_disks(paths)
            if any(known.volume_id == disk.volume_id for known in disks):
                return
            if _running_pid(paths) is not None:
                await qemudevices.plug_disk(paths, disk)
            _write_disks(paths, [*disks, disk])

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            disks = _read_disks(paths)
            if _running_pid(paths) is not None:
                await qemudevices.unplug_disk(paths, volume_id)
            _write_disks(paths, [disk for disk in disks if disk.volume_id != volume_id])

    async def attach_nic(self, server_id: str, nic: Nic) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            spec = _read_spec(paths)
            if any(known.port_id == nic.port_id for known in spec.nics):
                return
            if _running_pid(paths) is not None:
                await qemudevices.plug_nic(paths, nic)
            write_atomic(paths.spec, spec_to_json(with_nic(spec, nic)))

    async def detach_nic(self, server_id: str, port_id: str) -> None:
        paths = self.paths(server_id)
        async with self._lock(server_id):
            spec = _read_spec(paths)
            nic = next((known for known in spec.nics if known.port_id == port_id), None)
            if nic is None:
                return
            if _running_pid(paths) is not None:
                await qemudevices.unplug_nic(paths, nic)
            write_atomic(paths.spec, spec_to_json(without_nic(spec, port_id)))

    async def set_password(self, server_id: str, password: str) -> None:
        """Nova sets a VM's password through the QEMU guest agent; these VMs run none."""
        _require(self.paths(server_id))
        raise NotSupported("the VM runs no guest agent to set its password")

    def disk_files(self, server_id: str) -> DiskFiles:
        """The root overlay, the ephemeral disk and the console log; the config drive and
        the sockets are made again at the next boot."""
        paths = self.paths(server_id)
        names = (paths.root_disk.name, ephemeral.FILE_NAME, paths.console_log.name)
        return DiskFiles(paths.dir, tuple(n for n in names if (paths.dir / n).exists()))

    async def resize_disk(self, server_id: str, volume_id: str) -> None:
        """QEMU told the volume file's new size (`block_resize`): the guest's virtio-blk
        sees a capacity change. A stopped VM reads the size at its next boot."""
        paths = self.paths(server_id)
        async with self._lock(server_id):
            _require(paths)
            disk = next((d for d in _read_disks(paths) if d.volume_id == volume_id), None)
            if disk is None:
                raise InstanceError(f"volume {volume_id} is not attached to {server_id}")
            if _running_pid(paths) is None:
                return
            node, _ = qemuargs.disk_names(volume_id)
            try:
                size = os.stat(disk.path).st_size
                async with qmp.connect(paths.qmp) as monitor:
                    await monitor.execute("block_resize", {"node-name": node, "size": size})
            except OSError as error:
                raise InstanceError(f"volume {volume_id}: {error.strerror}") from None
            except qmp.QmpError as error:
                raise InstanceError(f"resize {volume_id}: {error}") from None

    # --- live migration (`instances.LiveMigration`) -------------------------------------

    async def slots(self, server_id: str) -> dict[str, int]:
        paths = self.paths(server_id)
        async with self._lock(server_id), _running_monitor(paths, NOT_RUNNING) as monitor:
            return qemuargs.pci_slots(await monitor.execute("query-pci"))

    async def receive_live(
        self, spec: InstanceSpec, slots: Mapping[str, int], host: str
    ) -> Incoming:
        """A QEMU like the source's, paused, waiting on `host`: its own root overlay on this
        host's copy of the image and a blank ephemeral disk, both served over NBD for the
        source to mirror into (the image itself never travels), and the migration stream's
        listener. Nothing stays behind when it cannot be readied."""
        paths = self.paths(spec.server_id)
        async with self._lock(spec.server_id):
            if _running_pid(paths) or paths.spec.exists():
                raise InstanceError(f"instance {spec.server_id} is already on this host")
            try:
                return await self._ready_incoming(paths, spec, slots, host)
            except (InstanceError, OSError) as error:
                pid = _running_pid(paths)
                if pid is not None:
                    await _kill(pid)
                shutil.rmtree(paths.dir, ignore_errors=True)
                _remove_sockets(paths)
                raise InstanceError(f"readying {spec.server_id} for its state: {error}") from None

    async def _ready_incoming(
        self, paths: InstancePaths, spec: InstanceSpec, slots: Mapping[str, int], host: str
    ) -> Incoming:
        paths.dir.mkdir(parents=True)
        _make_socket_dirs(paths)
        exports = []
        if spec.image_file:
            await _create_overlay(spec.image_file, paths.root_disk, spec.root_gb)
            exports.append(qemumigrate.ROOT_NODE)
        if spec.ephemeral_gb > 0:
            await asyncio.to_thread(ephemeral.ensure, paths.dir, spec.ephemeral_gb)
            exports.append(qemumigrate.EPHEMERAL_NODE)
        if spec.config_drive:
            await asyncio.to_thread(configdrive.build_iso, spec.config_drive, paths.config_drive)
        write_atomic(paths.spec, spec_to_json(spec))
        _write_disks(paths, spec.disks)
        await self._launch(paths, spec, slots=slots, incoming=True)
        try:
            async with qmp.connect(paths.qmp) as monitor:
                nbd_port = await qemumigrate.listen(monitor, "nbd-server-start", host)
                for node in exports:
                    export = {"type": "nbd", "id": node, "node-name": node, "writable": True}
                    await monitor.execute("block-export-add", export)
                migration_port = await qemumigrate.listen(monitor, "migrate-incoming", host)
        except qmp.QmpError as error:
            raise InstanceError(str(error)) from None
        return Incoming(host, nbd_port, migration_port, tuple(exports))

    async def send_live(self, server_id: str, incoming: Incoming) -> None:
        """Each local disk mirrored into its NBD export on the destination until the copy
        keeps up with the guest (`blockdev-mirror`, READY), then the memory copied while the
        guest runs (`migrate`), paused before the switch-over so the mirrors complete on a
        quiet disk (`pause-before-switchover`, as libvirt does), then the switch-over: the
        guest stays paused here (`postmigrate`). On failure everything started is cancelled
        and a guest that ran runs on."""
        paths = self.paths(server_id)
        async with self._lock(server_id), _running_monitor(paths, NOT_RUNNING) as monitor:
            underway = self._underway[server_id] = qemumigrate.Underway()
            jobs: list[str] = []
            try:
                status = await monitor.execute("query-status")
                try:
                    await qemumigrate.migrate(monitor, incoming, jobs, underway)
                except (qmp.QmpError, InstanceError) as error:
                    await qemumigrate.abandon(
                        monitor, jobs, running=status.get("status") == "running"
                    )
                    raise InstanceError(f"live migration of {server_id}: {error}") from None
            finally:
                self._underway.pop(server_id, None)

    def progress(self, server_id: str) -> dict[str, int] | None:
        """How far the server's live migration from here is (Nova's memory_* and disk_*
        byte counts), or None when none is under way."""
        underway = self._underway.get(server_id)
        return dict(underway.progress) if underway is not None else None

    def steer(self, server_id: str, wish: str) -> bool:
        """Ask the live migration under way to `abort` or to `force_complete` (the guest
        paused, so its memory stops changing and the copy converges); False when none is."""
        underway = self._underway.get(server_id)
        if underway is None:
            return False
        underway.wish = wish
        return True

    async def abandon_stray(self, server_id: str, running: bool) -> bool:
        """A live migration from here that an agent before this one started and did not see
        end, undone: the disks' mirrors and the memory copy cancelled, and the guest running
        again when `running` (QEMU would keep it paused before the switch-over for good).
        True when there was one; a completed one (the guest has left) is not touched. A
        suspend's save is undone the same way, and its half-written (or never renamed) file
        dropped: the guest runs on (when `running`) and a suspend asked again saves afresh.
        What an agent stopped between the steps of a suspend or resume left is finished
        instead (`_interrupted`): a save complete and renamed whose QEMU was not ended yet
        (QEMU quits, as the suspend would have made it: the instance is suspended), or a
        resumed guest running beside its saved files (they are dropped and its devices
        caught up, as the resume would have done)."""
        paths = self.paths(server_id)
        if server_id in self._underway:
            return False
        if self._lock(server_id).locked():  # asked of it meanwhile: a retried migration
            return False  # undoes what it finds itself, so none is waited for here
        async with self._lock(server_id):
            saving = _saving(paths)
            was_saving = saving.exists()
            if was_saving and not paths.memory_state.exists():
                paths.suspended.unlink(missing_ok=True)  # written just before the rename
            pid = _running_pid(paths)
            if pid is None:
                saving.unlink(missing_ok=True)
                return was_saving
            try:
                async with qmp.connect(paths.qmp) as monitor:
                    left = None if was_saving else await _interrupted(paths, monitor)
                    undone = bool(left) or await qemumigrate.abandon_stray(
                        monitor, running, was_saving
                    )
            except qmp.QmpError as error:
                raise InstanceError(f"{server_id}: {error}") from None
            if left == "suspend":  # once the monitor is closed
                await _terminate(paths, pid)
                _remove_sockets(paths)
            elif left == "resume":
                await self._restored(paths)
            saving.unlink(missing_ok=True)  # QEMU writes it no more
            return undone

    async def departed(self, server_id: str) -> bool:
        paths = self.paths(server_id)
        if _running_pid(paths) is None:
            return False
        async with self._lock(server_id):
            try:
                async with qmp.connect(paths.qmp) as monitor:
                    return await _moved_away(monitor)
            except qmp.QmpError as error:  # unknown is not "still here": the caller waits
                raise InstanceError(f"{server_id}: {error}") from None

    async def finish_live(self, server_id: str, console: str, paused: bool = False) -> None:
        """The incoming guest resumed (left paused when it was paused before it moved);
        one resumed already (asked again by a controller that restarted) is left running."""
        paths = self.paths(server_id)
        idle = "{} is not waiting here for its state"
        async with self._lock(server_id), _running_monitor(paths, idle) as monitor:
            if (await monitor.execute("query-status")).get("status") == "running":
                return
            status = await qemumigrate.migration_done(monitor, "the incoming state", 30.0)
            if status != "completed":
                raise InstanceError(f"the incoming migration {status}")
            with contextlib.suppress(qmp.QmpError):  # stopped by an earlier ask already
                await monitor.execute("nbd-server-stop")
            if console and not _printed(paths):  # the guest has not run here yet
                with paths.console_log.open("a") as log:
                    log.write(console if console.endswith("\n") else console + "\n")
            if not paused:
                await monitor.execute("cont")

    async def _launch(
        self,
        paths: InstancePaths,
        spec: InstanceSpec,
        slots: Mapping[str, int] | None = None,
        incoming: bool = False,
        disks: builtins.list[Disk] | None = None,
    ) -> None:
        """Start QEMU for the instance and return once it has daemonized. A fresh boot
        drops a suspended guest's saved memory."""
        for stale in (paths.pidfile, paths.qmp, paths.console_socket):
            stale.unlink(missing_ok=True)
        if not incoming:
            _discard_saved(paths)
        rescue = None if incoming else _read_rescue(paths)
        if rescue is not None:  # the rescue image's kernel; no volumes unless stable
            spec = rescue_spec(spec, rescue)
            disks = None if rescue.stable else []
        argv = qemuargs.qemu_argv(
            spec,
            paths,
            disks=_read_disks(paths) if disks is None else disks,
            accel=self.accel,
            binary=self.qemu_binary,
            root_format="qcow2" if paths.root_disk.exists() else None,
            tsc=_host_tsc_khz() if self.accel == "tcg" and spec.kernel else None,
            slots=slots,
            incoming=incoming,
            rescue=rescue,
        )
        await _run(qemuargs.in_netns(argv, spec.netns_path), LAUNCH_TIMEOUT_S)
        if _running_pid(paths) is None:
            raise InstanceError(f"QEMU for {spec.server_id} exited at once; see console.log")


# --- live migration ---------------------------------------------------------------------

NOT_RUNNING = "{} is not running: nothing to move live"
NOT_RUNNING_NOW = "{} is not running"


async def _moved_away(monitor: qmp.Monitor) -> bool:
    """The guest's state went to another host: `postmigrate` after a migration that
    completed (one that failed late leaves a paused guest in `postmigrate` too, QEMU 7.2)."""
    if (await monitor.execute("query-status")).get("status") != "postmigrate":
        return False
    return (await monitor.execute("query-migrate")).get("status") == "completed"


async def _runs_here(monitor: qmp.Monitor, server_id: str) -> bool:
    """Whether the guest's vCPUs run; InstanceError when its state has moved away."""
    if await _moved_away(monitor):
        raise InstanceError(f"{server_id} has moved to another host")
    return (await monitor.execute("query-status")).get("status") == "running"


@contextlib.asynccontextmanager
async def _running_monitor(paths: InstancePaths, idle: str) -> AsyncIterator[qmp.Monitor]:
    """The running VM's monitor: InstanceError `idle` (formatted with the server id) when
    QEMU is not running, and QEMU's refusals in the block as InstanceError."""
    server_id = paths.dir.name
    if _running_pid(paths) is None:
        raise InstanceError(idle.format(server_id))
    try:
        async with qmp.connect(paths.qmp) as monitor:
            yield monitor
    except qmp.QmpError as error:
        raise InstanceError(f"{server_id}: {error}") from None


# --- actions ----------------------------------------------------------------------------


async def _soft_reset(monitor: qmp.Monitor) -> bool:
    """Ctrl-Alt-Del, then wait for the guest's own reset; False when it never came."""
    with monitor.events(["RESET"]) as events:
        await monitor.execute("send-key", {"keys": CTRL_ALT_DELETE})
        return await monitor.next_event(events, SOFT_REBOOT_TIMEOUT_S) is not None


async def _create_overlay(image: Path, overlay: Path, root_gb: int) -> None:
    """A qcow2 overlay backed by `image` (its format probed: the image is never written)."""
    info = json.loads(await _run([QEMU_IMG, "info", "--output=json", str(image)]))
    temporary = overlay.with_name(f".{overlay.name}.tmp")
    create = [QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", info["format"], "-b", str(image)]
    await _run([*create, str(temporary)])
    if root_gb > 0 and root_gb << 30 > int(info["virtual-size"]):
        await _run([QEMU_IMG, "resize", "-q", str(temporary), f"{root_gb}G"])
    os.replace(temporary, overlay)


async def _rebase(overlay: Path, image: Path) -> None:
    """Point `overlay` at `image` when its backing file is another path to the same image
    (a migrated disk names its old host's copy): an unsafe rebase, the data being the same."""
    info = json.loads(await _run([QEMU_IMG, "info", "--output=json", str(overlay)]))
    if info.get("backing-filename") in (None, str(image)):
        return
    base = json.loads(await _run([QEMU_IMG, "info", "--output=json", str(image)]))
    await _run([QEMU_IMG, "rebase", "-u", "-F", base["format"], "-b", str(image), str(overlay)])


async def _power_down(paths: InstancePaths, pid: int, timeout: float) -> None:
    """The ACPI power button, then `quit` and SIGKILL when the guest has not gone within
    `timeout`; its sockets removed."""
    with contextlib.suppress(qmp.QmpError):
        async with qmp.connect(paths.qmp) as monitor:
            await monitor.execute("system_powerdown")
    if not await _exited(pid, timeout):
        await _terminate(paths, pid)
    _remove_sockets(paths)


async def _terminate(paths: InstancePaths, pid: int) -> None:
    """`quit` over QMP, then SIGKILL when QEMU is still there."""
    with contextlib.suppress(qmp.QmpError):
        async with qmp.connect(paths.qmp, timeout=2.0) as monitor:
            await monitor.execute("quit")
    if not await _exited(pid, 2.0):
        await _kill(pid)


async def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not await _exited(pid, 5.0):
        raise InstanceError(f"QEMU pid {pid} survived SIGKILL")


async def _exited(pid: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _alive(pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    """Running and not a zombie (reaped here when this process is its subreaper)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _size_of(path: str) -> int:
    """A volume's size in bytes, a file or a block device; 0 when it cannot be read."""
    try:
        found = os.stat(path)
        if not S_ISBLK(found.st_mode):
            return found.st_size
        with open(path, "rb") as device:
            return device.seek(0, os.SEEK_END)
    except OSError:
        return 0


def _opened(paths: InstancePaths, saved: Disk, path_now: str | None) -> Disk:
    """A disk a suspended guest was saved with, as its QEMU is to open it now: where the
    volume is now; a detached one where it was, or, its file gone, an empty sparse file of
    its size in the instance's directory (the device's state loads; it is unplugged next)."""
    if path_now is not None:
        return replace(saved, path=path_now)
    if os.path.exists(saved.path):
        return saved
    sizes = _read_saved_sizes(paths)
    stand_in = paths.dir / f"{DETACHED_PREFIX}{qemuargs.disk_names(saved.volume_id)[0]}"
    try:
        with open(stand_in, "wb") as empty:
            empty.truncate(sizes.get(saved.volume_id) or STAND_IN_SIZE)
    except OSError as error:
        raise InstanceError(
            f"resume {paths.dir.name}: no stand-in for detached {saved.volume_id}: {error}"
        ) from None
    return replace(saved, path=str(stand_in))


Interrupted = Literal["suspend", "resume"]  # the step of it an agent stopped after


async def _interrupted(paths: InstancePaths, monitor: qmp.Monitor) -> Interrupted | None:
    """Which step of a suspend or resume an agent stopped in, when the files beside a
    running QEMU (memory.state and suspended.json, no save being written) say one did:
    "suspend" when the save completed and was renamed but QEMU was not ended (it is left
    `postmigrate`, its migration `completed`); "resume" when the restored guest runs but its
    saved files were not dropped. None otherwise: a resume's QEMU still loading, or loaded
    and not yet running (a resume asked again finishes it), or nothing interrupted."""
    if not (paths.memory_state.exists() and paths.suspended.exists()):
        return None
    status = (await monitor.execute("query-status")).get("status")
    if status == "running":
        return "resume"
    migrated = (await monitor.execute("query-migrate")).get("status")
    return "suspend" if status == "postmigrate" and migrated == "completed" else None


def _saving(paths: InstancePaths) -> Path:
    """Where a suspend writes the guest's memory until the save is complete."""
    return paths.memory_state.with_name(f".{paths.memory_state.name}.tmp")


def _running_pid(paths: InstancePaths) -> int | None:
    """QEMU's pid when it runs for this instance, else None."""
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if is_instance_process(cmdline, paths.pidfile) and _alive(pid) else None


def _printed(paths: InstancePaths) -> bool:
    try:
        return paths.console_log.stat().st_size > 0
    except FileNotFoundError:
        return False


def _read_saved(
    paths: InstancePaths,
) -> tuple[InstanceSpec, builtins.list[Disk], dict[str, int]]:
    """What a suspended guest ran with (suspended.json): its spec, disks and PCI slots."""
    try:
        saved = json.loads(paths.suspended.read_bytes())
        spec = spec_from_json(saved["spec"].encode())
        return spec, [Disk(**disk) for disk in saved["disks"]], dict(saved["slots"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InstanceError(f"{paths.dir.name}: its saved state is unreadable: {error}") from None


def _read_saved_sizes(paths: InstancePaths) -> dict[str, int]:
    """The volumes' sizes when the guest was saved (none in a save from before they were)."""
    try:
        sizes = json.loads(paths.suspended.read_bytes()).get("sizes") or {}
        return {str(volume): int(size) for volume, size in sizes.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _discard_saved(paths: InstancePaths) -> None:
    for saved in (paths.memory_state, paths.suspended):
        saved.unlink(missing_ok=True)


def _read_rescue(paths: InstancePaths) -> RescueBoot | None:
    try:
        return rescue_from_json(paths.rescue.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise InstanceError(f"{paths.rescue} is unreadable: {error}") from None


def _drop_rescue(paths: InstancePaths) -> None:
    for rescued in (paths.rescue, paths.rescue_disk):
        rescued.unlink(missing_ok=True)


def _remove_sockets(paths: InstancePaths) -> None:
    """A stopped VM's monitor and console sockets (they may live outside its directory)."""
    for socket in (paths.qmp, paths.console_socket):
        socket.unlink(missing_ok=True)


def _make_socket_dirs(paths: InstancePaths) -> None:
    for socket in (paths.qmp, paths.console_socket):
        socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _require(paths: InstancePaths) -> None:
    if not paths.spec.exists():
        raise InstanceError(f"no instance {paths.dir.name}")


def _read_spec(paths: InstancePaths) -> InstanceSpec:
    try:
        return spec_from_json(paths.spec.read_bytes())
    except FileNotFoundError:
        raise InstanceError(f"no instance {paths.dir.name}") from None


def _read_disks(paths: InstancePaths) -> list[Disk]:
    try:
        return [Disk(**disk) for disk in json.loads(paths.disks.read_bytes())]
    except FileNotFoundError:
        return []


def _write_disks(paths: InstancePaths, disks: Iterable[Disk]) -> None:
    write_atomic(paths.disks, json.dumps([asdict(disk) for disk in disks]).encode())


def _host_tsc_khz() -> int | None:
    try:
        return qemuargs.tsc_khz(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


async def _run(argv: list[str], timeout: float = 30.0) -> bytes:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise InstanceError(f"{argv[0]} is not installed") from None
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise InstanceError(f"{argv[0]} did not finish in {timeout:.0f} s") from None
    if process.returncode != 0:
        raise InstanceError(f"{argv[0]} failed: {stderr.decode(errors='replace').strip()}")
    return stdout
