"""The instance driver seam: what the host agent asks of a hypervisor, whatever runs the guest.

A server scheduled to a host becomes an *instance* there. The agent prepares what the guest
needs — the image on disk, the network namespace or tap device plugged into the tenant bridge
(`unistack.dataplane.tenantnet`), volumes from the pool (`unistack.dataplane.volumepool`) —
and hands the driver one `InstanceSpec`. Drivers:

- `unistack.dataplane.containers` — a system container per server (runc, overlayfs rootfs
  from the image's layers, busybox init, cgroup v1 limits from the flavor);
- `unistack.dataplane.qemu` — a real VM (TCG here, KVM where `/dev/kvm` works), root disk a
  qcow2 overlay on the image, virtio-net on a tap, virtio-blk volumes hot-plugged over QMP;
- `FakeInstances` below — state only, for scale tests and callers' unit tests.

Every call is idempotent and keyed by the server id, and an instance outlives the agent:
after an agent restart `list()` and `state()` find running instances again from what the
driver keeps on disk, so nothing is lost or started twice.
"""

from __future__ import annotations

import base64
import builtins
import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable


class PowerState(enum.IntEnum):
    """Nova's power states, as the compute API reports them (`OS-EXT-STS:power_state`)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


@dataclass(frozen=True)
class Nic:
    """One port of the instance: the device the network side made for it."""

    port_id: str
    mac: str
    # container driver: the interface name inside the instance's netns (eth0, eth1...);
    # qemu driver: the tap device on the host (`tenantnames.port_device`).
    device: str
    fixed_ips: tuple[str, ...] = ()  # "10.0.0.5/24", for guests configured statically
    gateway: str | None = None
    mtu: int = 1500
    dns_nameservers: tuple[str, ...] = ()  # the subnet's, for /etc/resolv.conf


@dataclass(frozen=True)
class Disk:
    """A block device given to the instance: a file (qemu) or a block device (container)."""

    volume_id: str
    path: str  # file in the volume pool, or /dev/loopN
    target: str  # guest device name: vdb, vdc, ...
    read_only: bool = False


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a driver needs to start a server's guest."""

    server_id: str
    hostname: str
    vcpus: int
    memory_mb: int
    # container: unpacked image layers, lowest first; qemu: the image file (raw or qcow2),
    # plus kernel/initrd when the image boots directly (AMI with AKI/ARI).
    image_layers: tuple[Path, ...] = ()
    image_file: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    kernel_args: str = ""
    root_gb: int = 0
    ephemeral_gb: int = 0  # a blank ext4 disk of this size, the guest's `EPHEMERAL_DEVICE`
    netns_path: str | None = None  # container driver: join this network namespace
    nics: tuple[Nic, ...] = ()
    disks: tuple[Disk, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    user_data: bytes = b""
    public_keys: tuple[str, ...] = ()
    # the config drive's files by path (`configdrive`): a read-only disk labelled config-2
    config_drive: Mapping[str, bytes] = field(default_factory=dict)
    # personality files by guest path, written once at the first boot (`injection`)
    personality: Mapping[str, bytes] = field(default_factory=dict)


def encode_files(files: Mapping[str, bytes]) -> dict[str, str]:
    """A config drive's files for a spec.json: contents as base64."""
    return {path: base64.b64encode(body).decode() for path, body in files.items()}


def decode_files(document: Mapping[str, str] | None) -> dict[str, bytes]:
    """The inverse of `encode_files` (an older spec.json has none)."""
    return {path: base64.b64decode(body) for path, body in (document or {}).items()}


@dataclass(frozen=True)
class RescueBoot:
    """What a rescued instance boots instead of its own image (Nova's rescue image): a
    container's unpacked layers, or a VM's disk image with its kernel and initrd. The
    instance's own root is the guest's second disk (a VM's vdb) or, in a container, its
    root filesystem mounted on /mnt."""

    image_layers: tuple[Path, ...] = ()
    image_file: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    kernel_args: str = ""
    # stable device rescue (Nova 2.87, the image's hw_rescue_device and hw_rescue_bus): a
    # VM keeps every disk where it is and gets the rescue image as one more, a `device`
    # ("disk" or "cdrom") on a `bus` ("virtio", "scsi", "usb" or "ide")
    device: str = ""
    bus: str = ""

    @property
    def stable(self) -> bool:
        return bool(self.device or self.bus)


RESCUE_DEVICES, RESCUE_BUSES = ("disk", "cdrom"), ("virtio", "scsi", "usb", "ide")


def write_atomic(target: Path, data: bytes) -> None:
    """`data` in `target`, whole or not at all (a temporary file beside it, renamed)."""
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


_RESCUE_FILES = ("image_file", "kernel", "initrd")


def rescue_to_json(boot: RescueBoot) -> bytes:
    """`boot` as the driver keeps it beside a rescued instance."""
    files = {key: str(getattr(boot, key)) if getattr(boot, key) else None for key in _RESCUE_FILES}
    layers = [str(layer) for layer in boot.image_layers]
    kept = {"kernel_args": boot.kernel_args, "device": boot.device, "bus": boot.bus}
    return json.dumps({**files, "image_layers": layers, **kept}).encode()


def rescue_from_json(raw: bytes) -> RescueBoot:
    data = json.loads(raw)
    files = {key: Path(data[key]) if data.get(key) else None for key in _RESCUE_FILES}
    return RescueBoot(
        image_layers=tuple(Path(layer) for layer in data.get("image_layers") or ()),
        kernel_args=str(data.get("kernel_args") or ""),
        device=str(data.get("device") or ""),
        bus=str(data.get("bus") or ""),
        **files,
    )


def rescue_spec(spec: InstanceSpec, boot: RescueBoot) -> InstanceSpec:
    """What a rescued guest boots: the rescue image, with the server's identity, NICs and
    config drive, without its volumes and ephemeral disk (libvirt's rescue domain); a stable
    device rescue keeps those."""
    rescued = replace(
        spec,
        image_layers=boot.image_layers,
        image_file=boot.image_file,
        kernel=boot.kernel,
        initrd=boot.initrd,
        kernel_args=boot.kernel_args,
    )
    return rescued if boot.stable else replace(rescued, ephemeral_gb=0, disks=())


@dataclass(frozen=True)
class DiskFiles:
    """What makes an instance's disk on this host, for a cold migration to carry to another
    (`unistack.dataplane.diskmove`): `names` under `directory`, the driver's instance
    directory. Everything else the driver makes again at the next boot from the spec."""

    directory: Path
    names: tuple[str, ...]


@dataclass(frozen=True)
class Incoming:
    """Where a live migration's destination waits (`LiveMigration.receive_live`): its
    hypervisor's migration stream at `host:migration_port`, and the disks the source mirrors
    into it served over NBD at `host:nbd_port`, one export per name in `exports`."""

    host: str
    nbd_port: int
    migration_port: int
    exports: tuple[str, ...] = ()


class InstanceError(Exception):
    """A driver could not do what was asked; the message says why (it becomes the fault)."""


class NotSupported(InstanceError):
    """This kind of instance can never do what was asked (not a failure of this one)."""


class InstanceDriver(Protocol):
    """One hypervisor on one host."""

    hypervisor_type: str  # "container", "qemu", "fake": reported on the hypervisor

    async def spawn(self, spec: InstanceSpec) -> None:
        """Create and boot the instance; nothing happens when it already runs."""

    async def stop(self, server_id: str, timeout: float = 10.0) -> None:
        """Graceful shutdown (ACPI / init's poweroff), then kill after `timeout`."""

    async def start(self, server_id: str) -> None:
        """Boot a stopped instance again from what was kept (root disk / upper layer)."""

    async def reboot(self, server_id: str, hard: bool) -> None:
        """Soft: ask the guest to restart; hard: reset at once. A paused guest runs again."""

    async def pause(self, server_id: str) -> None:
        """The running guest frozen where it is, in memory (Nova's pause); nothing when it
        is paused already."""

    async def unpause(self, server_id: str) -> None:
        """The paused guest running on from where it was."""

    async def suspend(self, server_id: str) -> None:
        """The running guest's state kept so it can go on later (Nova's suspend): a VM's
        memory saved to disk and its process gone, a system container frozen."""

    async def resume(self, server_id: str) -> None:
        """The suspended guest running on from its kept state."""

    async def rescue(self, server_id: str, boot: RescueBoot) -> None:
        """The guest shut down and booted from `boot`, its own root disk given to it as a
        second disk (Nova's rescue; a stable device rescue keeps every disk where it is and
        adds the rescue disk last); until `unrescue`, every boot (a host coming back) boots
        the rescue again. Asked again while rescued: nothing (the first image stays)."""

    async def unrescue(self, server_id: str) -> None:
        """The rescue guest gone and the instance booted from its own root disk again; when
        it is not rescued, booted if it is stopped (a retried unrescue)."""

    async def destroy(self, server_id: str) -> None:
        """Stop and remove everything the driver made for the instance; idempotent."""

    async def state(self, server_id: str) -> PowerState:
        """The instance's power state now (NOSTATE when the driver knows no such instance)."""

    async def list(self) -> list[str]:
        """Server ids of every instance the driver has on this host."""

    async def console_log(self, server_id: str, lines: int | None = None) -> builtins.list[str]:
        """The guest's console output (last `lines` lines)."""

    async def attach_disk(self, server_id: str, disk: Disk) -> None:
        """Hot-plug a block device into the running instance."""

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        """Remove a hot-plugged block device."""

    async def resize_disk(self, server_id: str, volume_id: str) -> None:
        """Show the guest an attached volume's new size (its file or device grew)."""

    async def set_password(self, server_id: str, password: str) -> None:
        """The guest's root password (NotSupported where no agent in the guest can)."""

    async def attach_nic(self, server_id: str, nic: Nic) -> None:
        """One more NIC for the instance, its device already made by the network side: a
        running guest sees it at once, and every later boot has it (Nova's interface attach)."""

    async def detach_nic(self, server_id: str, port_id: str) -> None:
        """The port's NIC out of the instance; nothing when it has none."""

    def disk_files(self, server_id: str) -> DiskFiles:
        """The instance's disk: what a cold migration moves (NotSupported when nothing of
        it is on disk). Its directory, made empty, is where an arriving disk is put."""


@runtime_checkable
class LiveMigration(Protocol):
    """A driver whose running guests move to another host without stopping (Nova's live
    migration with block migration): the destination is readied with the same devices at
    the same places, the source copies its local disks and its memory there while the guest
    runs, and the destination resumes it."""

    async def slots(self, server_id: str) -> dict[str, int]:
        """Where each of the running guest's devices sits (device id → PCI slot)."""
        ...

    async def receive_live(
        self, spec: InstanceSpec, slots: Mapping[str, int], host: str
    ) -> Incoming:
        """The destination: the guest's devices at `slots`, waiting for its state on `host`."""
        ...

    async def send_live(self, server_id: str, incoming: Incoming) -> None:
        """The source: local disks mirrored and memory copied to `incoming` while the guest
        runs; paused here at the end. On failure the guest runs on here (InstanceError)."""
        ...

    async def finish_live(self, server_id: str, console: str, paused: bool = False) -> None:
        """The destination, once the source is done: the guest resumed here (left paused
        when it was paused before it moved), the console it printed on the source kept
        before what it prints from now on."""
        ...

    def progress(self, server_id: str) -> dict[str, int] | None:
        """The source: how far the live migration is (bytes of memory and of disk, total,
        processed, remaining, as Nova's migration shows them); None when none is under way."""
        ...

    def steer(self, server_id: str, wish: str) -> bool:
        """The source: `abort` the live migration under way, or `force_complete` it (the
        guest paused until it runs on the destination); False when none is under way."""
        ...

    async def abandon_stray(self, server_id: str, running: bool) -> bool:
        """The source, after its agent restarted: a live migration (or a suspend's save) the
        agent before started and did not see end, undone (the guest running again when
        `running`); True when there was one."""
        ...

    async def departed(self, server_id: str) -> bool:
        """The source: True when the guest's state has gone to another host (the copy here
        is paused for good, waiting to be deleted); InstanceError when that cannot be told."""
        ...


@dataclass
class _FakeInstance:
    spec: InstanceSpec
    password: str | None = None
    power: PowerState = PowerState.RUNNING
    console: list[str] = field(default_factory=list)
    rescue: RescueBoot | None = None
    disks: dict[str, Disk] = field(default_factory=dict)


def with_nic(spec: InstanceSpec, nic: Nic) -> InstanceSpec:
    """`spec` with `nic` last (replacing an earlier record of the same port)."""
    kept = tuple(known for known in spec.nics if known.port_id != nic.port_id)
    return replace(spec, nics=(*kept, nic))


def without_nic(spec: InstanceSpec, port_id: str) -> InstanceSpec:
    return replace(spec, nics=tuple(n for n in spec.nics if n.port_id != port_id))


class FakeInstances:
    """State only: what a driver would report, with nothing run. Hypervisor type `fake`."""

    hypervisor_type = "fake"

    def __init__(self) -> None:
        self.instances: dict[str, _FakeInstance] = {}
        self.calls: list[tuple[str, str]] = []

    def _get(self, server_id: str) -> _FakeInstance:
        try:
            return self.instances[server_id]
        except KeyError:
            raise InstanceError(f"no instance {server_id}") from None

    async def spawn(self, spec: InstanceSpec) -> None:
        self.calls.append(("spawn", spec.server_id))
        if spec.server_id not in self.instances:
            boot = [f"unistack fake instance {spec.server_id}", f"{spec.hostname} login: "]
            self.instances[spec.server_id] = _FakeInstance(spec, console=boot)

    async def stop(self, server_id: str, timeout: float = 10.0) -> None:
        self.calls.append(("stop", server_id))
        self._get(server_id).power = PowerState.SHUTDOWN

    async def start(self, server_id: str) -> None:
        self.calls.append(("start", server_id))
        self._get(server_id).power = PowerState.RUNNING

    async def reboot(self, server_id: str, hard: bool) -> None:
        self.calls.append(("reboot", server_id))
        instance = self._get(server_id)
        instance.power = PowerState.RUNNING
        instance.console.append("reboot: Restarting system")

    async def pause(self, server_id: str) -> None:
        self._power(server_id, "pause", PowerState.RUNNING, PowerState.PAUSED)

    async def unpause(self, server_id: str) -> None:
        self._power(server_id, "unpause", PowerState.PAUSED, PowerState.RUNNING)

    async def suspend(self, server_id: str) -> None:
        self._power(server_id, "suspend", PowerState.RUNNING, PowerState.SUSPENDED)

    async def resume(self, server_id: str) -> None:
        self._power(server_id, "resume", PowerState.SUSPENDED, PowerState.RUNNING)

    async def rescue(self, server_id: str, boot: RescueBoot) -> None:
        self.calls.append(("rescue", server_id))
        instance = self._get(server_id)
        instance.rescue, instance.power = instance.rescue or boot, PowerState.RUNNING

    async def unrescue(self, server_id: str) -> None:
        self.calls.append(("unrescue", server_id))
        instance = self._get(server_id)
        instance.rescue, instance.power = None, PowerState.RUNNING

    def _power(self, server_id: str, call: str, before: PowerState, after: PowerState) -> None:
        self.calls.append((call, server_id))
        instance = self._get(server_id)
        if instance.power not in (before, after):
            raise InstanceError(f"cannot {call} {server_id}: it is {instance.power.name.lower()}")
        instance.power = after

    async def destroy(self, server_id: str) -> None:
        self.calls.append(("destroy", server_id))
        self.instances.pop(server_id, None)

    async def state(self, server_id: str) -> PowerState:
        found = self.instances.get(server_id)
        return found.power if found else PowerState.NOSTATE

    async def list(self) -> list[str]:
        return sorted(self.instances)

    async def console_log(self, server_id: str, lines: int | None = None) -> builtins.list[str]:
        console = self._get(server_id).console
        return console[-lines:] if lines else list(console)

    async def attach_disk(self, server_id: str, disk: Disk) -> None:
        self.calls.append(("attach_disk", server_id))
        self._get(server_id).disks[disk.volume_id] = disk

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        self.calls.append(("detach_disk", server_id))
        self._get(server_id).disks.pop(volume_id, None)

    async def set_password(self, server_id: str, password: str) -> None:
        self.calls.append(("set_password", server_id))
        self._get(server_id).password = password

    async def attach_nic(self, server_id: str, nic: Nic) -> None:
        self.calls.append(("attach_nic", server_id))
        instance = self._get(server_id)
        instance.spec = with_nic(instance.spec, nic)

    async def detach_nic(self, server_id: str, port_id: str) -> None:
        self.calls.append(("detach_nic", server_id))
        instance = self._get(server_id)
        instance.spec = without_nic(instance.spec, port_id)

    def disk_files(self, server_id: str) -> DiskFiles:
        raise NotSupported("a fake instance has no disk to move")

    async def resize_disk(self, server_id: str, volume_id: str) -> None:
        self.calls.append(("resize_disk", server_id))
        if volume_id not in self._get(server_id).disks:
            raise InstanceError(f"volume {volume_id} is not attached to {server_id}")
