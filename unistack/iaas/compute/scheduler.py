"""Where a server goes: Nova's filter scheduler over placement-style allocations, as a pure
function.

`HostState` is one hypervisor (a Kubernetes Node): its inventory of VCPU, MEMORY_MB and
DISK_GB, the allocation ratios placement applies (Nova's defaults: 16 VCPUs, 1.5 MB of RAM
and 1 GB of disk per physical one), what its servers hold, its availability zone and the
server groups whose members run there. `select_host` filters (enabled and up: Nova's
ComputeFilter, a Node whose agent went silent is not Ready; availability zone,
forced host, resources, affinity, anti-affinity, the `same_host` and `different_host` hints:
Nova's SameHostFilter and DifferentHostFilter) and weighs (free RAM spreads, as Nova's
RAMWeigher; soft affinity and anti-affinity count members; the host whose pool holds the
volumes it boots with is preferred, since elsewhere they are reached over the network) and
returns the host or a `NoValidHost` naming why. The
controller (`controller.py`) gathers the states and records the allocation it chose on the
server; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

CPU_RATIO, RAM_RATIO, DISK_RATIO = 16.0, 1.5, 1.0


@dataclass(frozen=True)
class Resources:
    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus,
            self.memory_mb + other.memory_mb,
            self.disk_gb + other.disk_gb,
        )


@dataclass(frozen=True)
class HostState:
    name: str
    total: Resources
    used: Resources = Resources()
    zone: str = "nova"
    enabled: bool = True
    groups: dict[str, int] = field(default_factory=dict)  # server group id -> members here
    up: bool = True  # its agent is heard of (the Node is Ready): Nova's ComputeFilter

    def capacity(self) -> Resources:
        return Resources(
            int(self.total.vcpus * CPU_RATIO),
            int(self.total.memory_mb * RAM_RATIO),
            int(self.total.disk_gb * DISK_RATIO),
        )

    def fits(self, wanted: Resources) -> bool:
        cap, after = self.capacity(), self.used + wanted
        return (
            after.vcpus <= cap.vcpus
            and after.memory_mb <= cap.memory_mb
            and after.disk_gb <= cap.disk_gb
        )

    def free_ram(self) -> int:
        return self.capacity().memory_mb - self.used.memory_mb


@dataclass(frozen=True)
class Request:
    resources: Resources
    zone: str | None = None
    group_id: str | None = None
    group_policy: str | None = None  # affinity, anti-affinity, soft-affinity, soft-anti-affinity
    group_members: int = 0  # members of the group already placed anywhere
    host: str | None = None  # a forced host (admin's zone:host)
    volume_host: str | None = None  # the host whose pool holds the volumes it boots with: preferred
    same_hosts: frozenset[str] | None = None  # `same_host` hint: a host of one of its servers
    different_hosts: frozenset[str] = frozenset()  # `different_host` hint: none of its servers'


class NoValidHost(Exception):
    """No host passed the filters; the message is what Nova puts in the fault."""


def select_host(request: Request, hosts: Sequence[HostState]) -> HostState:
    candidates = [host for host in hosts if host.enabled and host.up]
    if not candidates:
        raise NoValidHost("No valid host was found. There are not enough hosts available.")
    checks = (_in_zone, _forced, _hinted, _has_room, _affinity, _anti_affinity)
    for check in checks:
        candidates = [host for host in candidates if check(request, host)]
        if not candidates:
            raise NoValidHost("No valid host was found. There are not enough hosts available.")
    return max(candidates, key=lambda host: (_weight(request, host), host.name))


def _in_zone(request: Request, host: HostState) -> bool:
    return request.zone is None or host.zone == request.zone


def _forced(request: Request, host: HostState) -> bool:
    return request.host is None or host.name == request.host


def _hinted(request: Request, host: HostState) -> bool:
    if request.same_hosts is not None and host.name not in request.same_hosts:
        return False
    return host.name not in request.different_hosts


def _has_room(request: Request, host: HostState) -> bool:
    return host.fits(request.resources)


def _affinity(request: Request, host: HostState) -> bool:
    if request.group_policy != "affinity" or not request.group_id or not request.group_members:
        return True
    return host.groups.get(request.group_id, 0) > 0


def _anti_affinity(request: Request, host: HostState) -> bool:
    if request.group_policy != "anti-affinity" or not request.group_id:
        return True
    return host.groups.get(request.group_id, 0) == 0


# A soft group policy weighs more than the volumes' host, which weighs more than free RAM
# (in MB: below this on any host up to a terabyte).
GROUP_WEIGHT = 1e9
VOLUMES_WEIGHT = 1e6


def _weight(request: Request, host: HostState) -> float:
    members = host.groups.get(request.group_id or "", 0)
    soft = 0.0
    if request.group_policy == "soft-affinity":
        soft = members * GROUP_WEIGHT
    elif request.group_policy == "soft-anti-affinity":
        soft = -members * GROUP_WEIGHT
    near = VOLUMES_WEIGHT if host.name == request.volume_host else 0.0
    return soft + near + host.free_ram()
