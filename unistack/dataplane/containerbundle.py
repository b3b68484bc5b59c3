"""What a container server keeps on disk: its spec (`spec.json`) and its runc bundle config.

`unistack.dataplane.containers` writes both into the instance directory. `spec.json` is the
`InstanceSpec` the agent gave, plus the disks attached since, so that start and reboot work
after an agent restart. `bundle_config` is the OCI runtime spec runc boots the server from,
one pure function of the spec:

- namespaces pid, mount, uts (hostname), ipc, cgroup (when the host supports it), and
  network: the port's namespace by path, else a new one with only loopback;
- `/sbin/init` as root with the capabilities of a system container: runtimes' default set
  plus NET_ADMIN (the guest configures its own interfaces, routes and DHCP lease inside
  its own network namespace). No SYS_ADMIN: runc makes every mount before the guest runs,
  busybox init mounts nothing, and attached disks get their device node from the host (see
  `containers`); without a user namespace SYS_ADMIN would be root on the host (cgroup v1
  release_agent, remounts). The price: the guest cannot mount an attached volume itself;
- cgroup v1 limits from the flavor: memory (no swap), CPU quota of `vcpus` CPUs, a pids
  limit, and a devices allow-list of the standard nodes plus the attached disks;
- `/proc/cpuinfo` showing the flavor's `vcpus` processors, not the host's (as LXCFS does;
  runc allows that file): `cpuinfo` in the bundle, written by `write_host_files` before boot;
- with an SSH server (`unistack.dataplane.sshd`), the host's dropbear and its libraries
  bind-mounted read-only into the guest's `/run`;
- with a config drive, its files (`config-drive` in the bundle, `configdrive.write_tree`)
  bind-mounted read-only at cloud-init's seed directory (`configdrive.SEED_DIR`).
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import orjson

from unistack.dataplane import configdrive, sshd
from unistack.dataplane.instances import Disk, InstanceSpec, Nic, decode_files, encode_files

MIB = 1024 * 1024
CPU_PERIOD_US = 100_000
CPU_SHARES_PER_VCPU = 1024
SYSTEM_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
    "CAP_NET_ADMIN",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = (
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
GUEST_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "container=unistack",
)
HOSTNAME_MAX = 64  # the kernel's limit for a UTS name (a longer FQDN fails the boot)
CPUINFO = "cpuinfo"  # in the bundle: the guest's /proc/cpuinfo
CONFIG_DRIVE = "config-drive"  # in the bundle: the config drive's tree, when it has one
HOST_CPUINFO = Path("/proc/cpuinfo")


@dataclasses.dataclass(frozen=True)
class DeviceNode:
    """A block device as the guest sees it: `/dev/<name>`, with the host device's numbers."""

    name: str
    major: int
    minor: int
    read_only: bool = False

    @property
    def access(self) -> str:
        """The devices cgroup's access string for it."""
        return "r" if self.read_only else "rw"


def bundle_config(
    spec: InstanceSpec,
    *,
    cgroups_path: str,
    devices: tuple[DeviceNode, ...] = (),
    pids_limit: int = 4096,
    cgroup_namespace: bool = True,
    ssh_server: sshd.SshServer | None = None,
    binds: dict[str, str] | None = None,
) -> dict[str, Any]:
    """runc's `config.json` for the server; the bundle's rootfs is `rootfs/`, and the bundle
    holds `cpuinfo` (`write_host_files`). `binds`: host directories mounted read-write in the
    guest (host path → guest path; a rescue's view of the server's root)."""
    caps = list(SYSTEM_CAPABILITIES)
    mounts = [*system_mounts(), cpuinfo_mount()]
    if ssh_server is not None:
        mounts += sshd.bind_mounts(ssh_server)
    if spec.config_drive:
        mounts.append(config_drive_mount())
    for source, destination in (binds or {}).items():
        mounts.append(
            {"destination": destination, "type": "bind", "source": source,
             "options": ["rbind", "rw"]}
        )  # fmt: skip
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/sbin/init"],
            "env": list(GUEST_ENV),
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": [],
                "ambient": [],
            },
            "noNewPrivileges": False,  # a system: su and other setuid programs work
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": spec.hostname[:HOSTNAME_MAX],
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces(spec.netns_path, cgroup_namespace),
            "cgroupsPath": cgroups_path,
            "resources": resources(spec, devices, pids_limit),
            "devices": [device_entry(device) for device in devices],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def namespaces(netns_path: str | None, cgroup_namespace: bool) -> list[dict[str, str]]:
    network = {"type": "network", "path": netns_path} if netns_path else {"type": "network"}
    chosen = [{"type": kind} for kind in ("pid", "mount", "uts", "ipc")]
    if cgroup_namespace:
        chosen.append({"type": "cgroup"})
    return [*chosen, network]


def resources(
    spec: InstanceSpec, devices: tuple[DeviceNode, ...], pids_limit: int
) -> dict[str, Any]:
    """cgroup v1 limits from the flavor, and the devices the guest may open."""
    memory = spec.memory_mb * MIB
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    rules += [device_rule(device) for device in devices]
    return {
        "memory": {"limit": memory, "swap": memory},
        "cpu": {
            "quota": spec.vcpus * CPU_PERIOD_US,
            "period": CPU_PERIOD_US,
            "shares": spec.vcpus * CPU_SHARES_PER_VCPU,
        },
        "pids": {"limit": pids_limit},
        "devices": rules,  # runc adds its standard nodes (null, zero, tty, pts...) after
    }


def device_rule(device: DeviceNode) -> dict[str, Any]:
    return {
        "allow": True,
        "type": "b",
        "major": device.major,
        "minor": device.minor,
        "access": device.access,
    }


def device_entry(device: DeviceNode) -> dict[str, Any]:
    return {
        "path": f"/dev/{device.name}",
        "type": "b",
        "major": device.major,
        "minor": device.minor,
        "fileMode": 0o440 if device.read_only else 0o660,
        "uid": 0,
        "gid": 0,
    }


def system_mounts() -> list[dict[str, Any]]:
    """/proc, a /dev tmpfs (not nodev: attached disks' nodes go there), /sys read-only."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=755", "size=16384k"],
        },
    ]


def cpuinfo_mount() -> dict[str, Any]:
    """The bundle's `cpuinfo` over the guest's /proc/cpuinfo (a relative source is the
    bundle's, for runc)."""
    return {
        "destination": "/proc/cpuinfo",
        "type": "bind",
        "source": CPUINFO,
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }


def config_drive_mount() -> dict[str, Any]:
    """The bundle's config drive tree (`write_host_files`), read-only where cloud-init's
    ConfigDrive source reads a seeded drive (`configdrive.SEED_DIR`)."""
    return {
        "destination": configdrive.SEED_DIR,
        "type": "bind",
        "source": CONFIG_DRIVE,
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }


def guest_cpuinfo(host_cpuinfo: str, vcpus: int) -> str:
    """The host's /proc/cpuinfo cut to its first `vcpus` processors (numbered from 0, as
    they are); all of it when the host has fewer."""
    blocks = [block for block in host_cpuinfo.split("\n\n") if block.strip()]
    return "".join(block.strip("\n") + "\n\n" for block in blocks[: max(vcpus, 1)])


def write_host_files(bundle: Path, spec: InstanceSpec, host_cpuinfo: Path = HOST_CPUINFO) -> None:
    """The bundle's own files that the guest sees (its `cpuinfo`, its config drive's tree),
    before every boot."""
    if spec.config_drive:
        configdrive.write_tree(spec.config_drive, bundle / CONFIG_DRIVE)
    else:
        shutil.rmtree(bundle / CONFIG_DRIVE, ignore_errors=True)
    target = bundle / CPUINFO
    temporary = target.with_name(f".{CPUINFO}.new")
    temporary.write_text(guest_cpuinfo(host_cpuinfo.read_text(), spec.vcpus))
    temporary.chmod(0o444)
    temporary.replace(target)


# --- spec.json ------------------------------------------------------------------------------


def encode_spec(spec: InstanceSpec) -> bytes:
    """The spec as JSON: paths as strings, user data as base64."""
    document = dataclasses.asdict(spec)
    for key in ("image_file", "kernel", "initrd"):
        value = getattr(spec, key)
        document[key] = str(value) if value is not None else None
    document["image_layers"] = [str(layer) for layer in spec.image_layers]
    document["user_data"] = base64.b64encode(spec.user_data).decode()
    document["config_drive"] = encode_files(spec.config_drive)
    document["personality"] = encode_files(spec.personality)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def decode_spec(data: bytes) -> InstanceSpec:
    """The inverse of `encode_spec`."""
    document: dict[str, Any] = orjson.loads(data)
    for key in ("image_file", "kernel", "initrd"):
        if document.get(key) is not None:
            document[key] = Path(document[key])
    document["image_layers"] = tuple(Path(layer) for layer in document["image_layers"])
    document["user_data"] = base64.b64decode(document["user_data"])
    document["nics"] = tuple(_nic(nic) for nic in document["nics"])
    document["disks"] = tuple(Disk(**disk) for disk in document["disks"])
    document["public_keys"] = tuple(document["public_keys"])
    document["personality"] = decode_files(document.get("personality"))
    document["config_drive"] = decode_files(document.get("config_drive"))
    return InstanceSpec(**document)


def _nic(document: dict[str, Any]) -> Nic:
    fields = {field.name for field in dataclasses.fields(Nic)}
    values = {key: value for key, value in document.items() if key in fields}
    for key in ("fixed_ips", "dns_nameservers"):
        if key in values:
            values[key] = tuple(values[key])
    return Nic(**values)


def with_disk(spec: InstanceSpec, disk: Disk) -> InstanceSpec:
    """`spec` with `disk` attached (replacing an earlier record of the same volume)."""
    kept = tuple(d for d in spec.disks if d.volume_id != disk.volume_id)
    return dataclasses.replace(spec, disks=(*kept, disk))


def without_disk(spec: InstanceSpec, volume_id: str) -> InstanceSpec:
    kept = tuple(d for d in spec.disks if d.volume_id != volume_id)
    return dataclasses.replace(spec, disks=kept)
