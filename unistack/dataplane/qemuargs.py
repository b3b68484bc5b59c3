"""The QEMU command line of an instance: pure decisions for `unistack.dataplane.qemu`.

`qemu_argv(spec, paths, ...)` turns an `InstanceSpec` into the arguments of a daemonized
`qemu-system-x86_64`: PC machine, monitor and serial console on unix sockets in the
instance's directory (`InstancePaths`), the root disk overlay and hot-plugged volumes as
virtio-blk (`-blockdev` JSON, so paths need no escaping), NICs as virtio-net on the taps the
network side made. Guests that boot a kernel directly get the server's identity and first NIC
on the kernel command line (`kernel_command_line`), read by the tiny VM's boot script
(`unistack.images.vminit`). Nothing here does I/O except `kvm_usable`, which looks at /dev
and /sys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unistack.dataplane import ephemeral
from unistack.dataplane.instances import Disk, InstanceSpec, Nic, RescueBoot

QEMU = "qemu-system-x86_64"
DEFAULT_KERNEL_ARGS = "console=ttyS0 panic=-1 quiet cryptomgr.notests"  # = vmimage.KERNEL_ARGS
_HOSTNAME_JUNK = re.compile(r"[^A-Za-z0-9.-]")


SOCKET_PATH_MAX = 107  # sun_path, less its NUL
SHORT_SOCKETS = Path("/run/unistack-qemu")


@dataclass(frozen=True)
class InstancePaths:
    """Where one instance keeps its files."""

    dir: Path

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def disks(self) -> Path:
        return self.dir / "disks.json"

    @property
    def root_disk(self) -> Path:
        return self.dir / "root.qcow2"

    @property
    def rescue_disk(self) -> Path:
        """A rescued guest's boot disk: an overlay on the rescue image (Nova's disk.rescue)."""
        return self.dir / "disk.rescue"

    @property
    def rescue(self) -> Path:
        """What a rescued guest boots (`instances.RescueBoot`), while it is rescued."""
        return self.dir / "rescue.json"

    @property
    def config_drive(self) -> Path:
        return self.dir / "disk.config"

    @property
    def memory_state(self) -> Path:
        """A suspended guest's memory and device state (`QemuInstances.suspend`)."""
        return self.dir / "memory.state"

    @property
    def suspended(self) -> Path:
        """What the suspended guest ran with: its spec, disks and devices' PCI slots."""
        return self.dir / "suspended.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    def _socket(self, name: str) -> Path:
        """`dir/name`, or when that is too long for a unix socket (a deep state directory)
        a short path derived from it, so a restarted agent finds the same one."""
        inside = self.dir / name
        if len(str(inside).encode()) <= SOCKET_PATH_MAX:
            return inside
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:20]
        return SHORT_SOCKETS / f"{digest}-{name}"

    @property
    def qmp(self) -> Path:
        return self._socket("qmp.sock")

    @property
    def console_socket(self) -> Path:
        return self._socket("console.sock")

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"


def kvm_usable(device: Path = Path("/dev/kvm"), modules: Path = Path("/sys/module")) -> bool:
    """KVM backed by hardware virtualisation: /dev/kvm opens and kvm_intel or kvm_amd is
    loaded (kvm_pvm, this project's hosts' KVM, runs only PVM-enabled guest kernels)."""
    hardware = (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()
    return hardware and os.access(device, os.R_OK | os.W_OK)


def tsc_khz(cpuinfo: str) -> int | None:
    """The host's TSC rate as `tsc_early_khz` wants it (TCG guests read the host's TSC):
    from `cpu MHz` in /proc/cpuinfo, which saves the guest's slow calibration."""
    match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.MULTILINE)
    return round(float(match.group(1)) * 1000) if match else None


def kernel_command_line(spec: InstanceSpec, tsc: int | None = None) -> str:
    """The guest kernel's arguments: the image's (or the default), the TCG clock hints, and
    the server's identity and first NIC for guests that configure themselves from it."""
    words = (spec.kernel_args or DEFAULT_KERNEL_ARGS).split()
    if tsc:
        words += [f"tsc_early_khz={tsc}", "tsc=reliable"]
    words += [f"unistack.id={spec.server_id}"]
    hostname = _HOSTNAME_JUNK.sub("", spec.hostname)
    if hostname:
        words.append(f"unistack.hostname={hostname}")
    if spec.nics:
        words += nic_arguments(spec.nics[0])
    return " ".join(words)


def nic_arguments(nic: Nic) -> list[str]:
    """`unistack.ip/gw/dns/mtu` for the first NIC (its first IPv4 address); the guest uses
    DHCP when there is no `unistack.ip`."""
    words = [f"unistack.mtu={nic.mtu}"]
    ipv4 = [address for address in nic.fixed_ips if "." in address]
    if ipv4:
        words.append(f"unistack.ip={ipv4[0] if '/' in ipv4[0] else ipv4[0] + '/32'}")
        if nic.gateway:
            words.append(f"unistack.gw={nic.gateway}")
    if nic.dns_nameservers:
        words.append("unistack.dns=" + ",".join(nic.dns_nameservers))
    return words


def disk_names(volume_id: str) -> tuple[str, str]:
    """(QMP block node name, device id) of a volume: node names are at most 31 characters."""
    digest = hashlib.sha256(volume_id.encode()).hexdigest()[:24]
    return f"vol{digest}", f"disk{digest}"


def nic_names(nic: Nic) -> tuple[str, str]:
    """(netdev id, device id) of a NIC, from its tap (one per port), so a NIC attached later
    is found again, whatever its place on the command line."""
    return f"net-{nic.device}", f"nic-{nic.device}"


def netdev(nic: Nic) -> dict[str, Any]:
    """The NIC's tap backend for QMP `netdev_add` (as `-netdev tap,...` says it)."""
    net, _ = nic_names(nic)
    return {"type": "tap", "id": net, "ifname": nic.device, "script": "no",
            "downscript": "no", "vhost": False}  # fmt: skip


def nic_device(nic: Nic) -> dict[str, Any]:
    """The NIC's virtio-net device, for `-device` and QMP `device_add`."""
    net, device = nic_names(nic)
    return {"driver": "virtio-net-pci", "netdev": net, "mac": nic.mac, "id": device}


def blockdev(disk: Disk) -> dict[str, Any]:
    node, _ = disk_names(disk.volume_id)
    source = {"driver": "host_device" if disk.path.startswith("/dev/") else "file"}
    return {
        "driver": "raw",
        "node-name": node,
        "read-only": disk.read_only,
        "file": {**source, "filename": disk.path},
    }


def disk_device(disk: Disk) -> dict[str, Any]:
    """A volume's virtio-blk device. `share-rw`: a multiattach volume is open in the QEMU of
    each server it is attached to, and QEMU's image locking refuses a second writer unless
    every one of them shares; Cinder allows a second attachment only for multiattach."""
    node, device = disk_names(disk.volume_id)
    serial = disk.volume_id[:20]
    return {
        "driver": "virtio-blk-pci",
        "drive": node,
        "id": device,
        "serial": serial,
        "share-rw": True,
    }


def qemu_argv(
    spec: InstanceSpec,
    paths: InstancePaths,
    *,
    disks: Iterable[Disk] = (),
    accel: str = "tcg",
    binary: str = QEMU,
    root_format: str | None = "qcow2",
    tsc: int | None = None,
    slots: Mapping[str, int] | None = None,
    incoming: bool = False,
    rescue: RescueBoot | None = None,
) -> list[str]:
    """The QEMU command line of an instance (daemonized; monitor, console, NICs, disks).

    `slots` puts PCI devices where a running guest has them (`device id → slot`): a live
    migration's destination must match its source, where hot-plugged devices took whatever
    slot was free. `incoming`: the guest waits, paused, for its state from a migration
    (`-incoming defer`, so the monitor says where to listen; `-S`, so it stays paused until
    the source has let go of its disks). `rescue`: the guest boots from the rescue disk
    (`paths.rescue_disk`, vda) with its own root disk next (vdb), as libvirt's rescue
    domain has them (the caller gives the rescue image's kernel in `spec`, and no volumes);
    a stable device rescue keeps every disk where it is and adds the rescue disk last, on
    its bus (`rescue_device`)."""
    at = _placer(slots or {})
    legacy = rescue is not None and not rescue.stable
    argv = [
        binary,
        *("-name", f"unistack-{spec.server_id}", "-M", "pc", "-nodefaults", "-no-user-config"),
        *("-accel", accel, *(["-cpu", "host"] if accel == "kvm" else [])),
        *("-m", str(spec.memory_mb), "-smp", str(max(spec.vcpus, 1)), "-display", "none"),
        *("-daemonize", "-pidfile", str(paths.pidfile)),
        *("-qmp", f"unix:{paths.qmp},server=on,wait=off"),
        "-chardev",
        f"socket,id=console,path={paths.console_socket},server=on,wait=off,"
        f"logfile={paths.console_log},logappend=on",
        *("-serial", "chardev:console"),
    ]
    if incoming:
        argv += ["-incoming", "defer", "-S"]
    if spec.kernel:
        argv += ["-kernel", str(spec.kernel), "-append", kernel_command_line(spec, tsc)]
        if spec.initrd:
            argv += ["-initrd", str(spec.initrd)]
    if legacy:
        booted = {"driver": "file", "filename": str(paths.rescue_disk)}
        node = {"driver": "qcow2", "node-name": "root", "file": booted}
        argv += ["-blockdev", json.dumps(node), "-device", at("virtio-blk-pci,drive=root,id=root")]
    if root_format:
        root = {"driver": "file", "filename": str(paths.root_disk)}
        name = "rescued" if legacy else "root"
        node = {"driver": root_format, "node-name": name, "file": root}
        argv += ["-blockdev", json.dumps(node)]
        argv += ["-device", at(f"virtio-blk-pci,drive={name},id={name}")]
    # virtio disks are named in PCI order: a boot volume is vda, the ephemeral disk next
    boot = [disk for disk in disks if disk.target == "vda"]
    for disk in boot:
        argv += ["-blockdev", json.dumps(blockdev(disk)), "-device", at(disk_device(disk))]
    if spec.ephemeral_gb > 0:
        local = {"driver": "file", "filename": str(ephemeral.path_in(paths.dir))}
        node = {"driver": "raw", "node-name": "ephemeral0", "file": local}
        argv += ["-blockdev", json.dumps(node)]
        argv += [
            "-device", at("virtio-blk-pci,drive=ephemeral0,id=ephemeral0,serial=ephemeral0"),
        ]  # fmt: skip
    if spec.config_drive:  # Nova's default: a CD-ROM on the second IDE bus (the guest's sr0)
        drive = {"driver": "file", "filename": str(paths.config_drive)}
        cdrom = {"driver": "raw", "node-name": "configdrive", "read-only": True, "file": drive}
        argv += ["-blockdev", json.dumps(cdrom)]
        argv += ["-device", "ide-cd,drive=configdrive,id=configdrive,bus=ide.1,unit=1"]
    for nic in spec.nics:
        net, _ = nic_names(nic)
        argv += [
            "-netdev",
            f"tap,id={net},ifname={nic.device},script=no,downscript=no,vhost=off",
            "-device",
            at(nic_device(nic)),
        ]
    for disk in disks:
        if disk not in boot:
            argv += [
                "-blockdev", json.dumps(blockdev(disk)), "-device", at(disk_device(disk)),
            ]  # fmt: skip
    if rescue is not None and rescue.stable:
        argv += rescue_device(paths.rescue_disk, rescue.device or "disk", rescue.bus, at)
    return argv


def rescue_device(
    disk: Path, device: str, bus: str, at: Callable[[str], str] = lambda device: device
) -> list[str]:
    """A stable device rescue's disk, last, as `device` ("disk" or "cdrom") on `bus`
    (virtio — a disk only —, scsi, usb or ide; a cdrom's default is ide, a disk's virtio),
    with the controller it needs, first of the disks in the boot order (a rescue image
    without a kernel boots from it; `-kernel`'s loader holds bootindex 0). ValueError for
    a pair no guest could have."""
    bus = bus or ("ide" if device == "cdrom" else "virtio")
    cdrom = device == "cdrom"
    file = {"driver": "file", "filename": str(disk)}
    node = {"driver": "qcow2", "node-name": "rescue", "read-only": cdrom, "file": file}
    argv, rescue = ["-blockdev", json.dumps(node)], "drive=rescue,id=rescue,bootindex=1"
    if bus == "virtio" and not cdrom:
        return [*argv, "-device", at(f"virtio-blk-pci,{rescue}")]
    if bus == "scsi":
        kind = "scsi-cd" if cdrom else "scsi-hd"
        controller = at("virtio-scsi-pci,id=rescue-scsi")
        return [*argv, "-device", controller, "-device", f"{kind},{rescue},bus=rescue-scsi.0"]
    if bus == "usb" and not cdrom:
        controller = at("qemu-xhci,id=rescue-usb")
        usb = f"usb-storage,{rescue},bus=rescue-usb.0"
        return [*argv, "-device", controller, "-device", usb]
    if bus == "ide":
        kind = "ide-cd" if cdrom else "ide-hd"
        return [*argv, "-device", f"{kind},{rescue},bus=ide.0,unit=0"]
    raise ValueError(f"a rescue {device} on the {bus} bus is not a device a guest can have")


def _placer(slots: Mapping[str, int]) -> Callable[[str | dict[str, Any]], str]:
    """A `-device` argument (`driver,key=value,...` or a dict, given as JSON) with its PCI
    `addr` from `slots` when its id is there."""

    def at(device: str | dict[str, Any]) -> str:
        if isinstance(device, dict):
            slot = slots.get(str(device.get("id")))
            return json.dumps(device if slot is None else {**device, "addr": hex(slot)})
        options = dict(item.partition("=")[::2] for item in device.split(",")[1:])
        slot = slots.get(options.get("id", ""))
        return device if slot is None else f"{device},addr={hex(slot)}"

    return at


def pci_slots(buses: list[dict[str, Any]]) -> dict[str, int]:
    """QMP `query-pci`'s answer as `device id → slot` for the devices that have an id (ours;
    the chipset's have none)."""
    return {
        str(device["qdev_id"]): int(device["slot"])
        for bus in buses
        for device in bus.get("devices", ())
        if device.get("qdev_id")
    }


def in_netns(argv: list[str], netns_path: str | None) -> list[str]:
    """Run `argv` in the network namespace at `netns_path` (where the taps are), if any."""
    return ["nsenter", f"--net={netns_path}", "--", *argv] if netns_path else argv
