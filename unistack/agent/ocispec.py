"""The OCI runtime spec (`config.json`) runc runs a container from, built from a
`ContainerConfig` by one pure function.

What a kubelet + containerd would give a container: its own pid, ipc, uts and mount
namespaces, the pod's network namespace by path, the default capability set of container
runtimes (privileged: all), /proc, /dev, /sys read-only, the pod's /etc/hosts,
/etc/hostname and /etc/resolv.conf, the volumes as bind mounts, and cgroup v1 limits under
`cgroups_path`. No seccomp profile (the pod default, `Unconfined`, without the
RuntimeDefault feature).
"""

from __future__ import annotations

from typing import Any

from unistack.agent.runtime import ContainerConfig

DEFAULT_CAPABILITIES = (
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
)
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES,
    "CAP_DAC_READ_SEARCH",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_LEASE",
    "CAP_AUDIT_CONTROL",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
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


def capability_name(name: str) -> str:
    """Kubernetes writes `NET_ADMIN`; OCI wants `CAP_NET_ADMIN`."""
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def capabilities(config: ContainerConfig) -> list[str]:
    if config.privileged:
        return list(ALL_CAPABILITIES)
    dropped = {capability_name(c) for c in config.drop_capabilities}
    if "CAP_ALL" in dropped:
        chosen: list[str] = []
    else:
        chosen = [c for c in DEFAULT_CAPABILITIES if c not in dropped]
    for added in config.add_capabilities:
        name = capability_name(added)
        if name == "CAP_ALL":
            return list(ALL_CAPABILITIES)
        if name not in chosen:
            chosen.append(name)
    return chosen


def _system_mounts(privileged: bool) -> list[dict[str, Any]]:
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
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
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
    ]


def _resources(config: ContainerConfig) -> dict[str, Any]:
    limits = config.limits
    resources: dict[str, Any] = {"devices": [{"allow": config.privileged, "access": "rwm"}]}
    if limits.memory_bytes is not None:
        # The swap limit equal to the memory limit: no swap, as the kubelet configures it.
        resources["memory"] = {"limit": limits.memory_bytes, "swap": limits.memory_bytes}
    cpu: dict[str, int] = {}
    if limits.cpu_quota_us is not None:
        cpu["quota"] = limits.cpu_quota_us
        cpu["period"] = limits.cpu_period_us
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if cpu:
        resources["cpu"] = cpu
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    return resources


def _network_namespaces(netns_path: str) -> list[dict[str, str]]:
    """The pod's network namespace and a hostname of its own; with no path (hostNetwork),
    neither: the container shares the node's network and hostname, as the kubelet does it."""
    if not netns_path:
        return []
    return [{"type": "uts"}, {"type": "network", "path": netns_path}]


def build(config: ContainerConfig, *, netns_path: str, cgroups_path: str) -> dict[str, Any]:
    """The `config.json` for one container; the bundle's rootfs is `rootfs/`. An empty
    `netns_path` runs it on the node's network (a hostNetwork pod)."""
    caps = capabilities(config)
    mounts = _system_mounts(config.privileged)
    for mount in config.mounts:
        options = ["rbind", "rprivate"] + (["ro"] if mount.read_only else ["rw"])
        mounts.append(
            {
                "destination": mount.destination,
                "type": "bind",
                "source": mount.source,
                "options": options,
            }
        )
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "mount"},
            *_network_namespaces(netns_path),
        ],
        "cgroupsPath": cgroups_path,
        "resources": _resources(config),
    }
    if not config.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty,
            "user": {"uid": config.uid, "gid": config.gid},
            "args": list(config.argv),
            "env": list(config.env),
            "cwd": config.cwd or "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": [],
                "ambient": [],
            },
            "noNewPrivileges": not config.privileged,
        },
        "root": {"path": "rootfs", "readonly": config.read_only_root},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if not netns_path:  # the node's hostname: runc sets one only in a UTS namespace of its own
        del spec["hostname"]
    return spec
