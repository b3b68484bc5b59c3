"""Host-local IP address management, with the reference ``host-local`` plugin's semantics.

A network's reservations live on disk so that every plugin exec sees them:
``<dataDir>/<network>/<ip>`` holds ``<container id>\\n<ifname>``, and
``last_reserved_ip.<range set index>`` the last address handed out, so allocation goes round
robin from there. A ``lock`` file taken with ``fcntl.flock`` serialises concurrent execs.

The choice of address (``RangeSet.next_free``) is pure and unit-tested; ``HostLocalStore`` is
the file I/O; ``allocate``/``release`` combine the two and expect the caller to hold
``store.lock()`` (the CNI plugin keeps it while it also plugs the veth into the bridge).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOCK_FILE = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."


class IpamError(Exception):
    """Allocation failed for a reason the caller reports (duplicate, exhausted)."""


class DuplicateAllocation(IpamError):
    """The container+ifname already holds an address in this network."""


class RangeExhausted(IpamError):
    """Every address of a range set is taken."""


class IpRange(NamedTuple):
    """One ``ranges`` entry: a subnet, the allocatable span within it, and its gateway."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> IpRange:
        """Parse ``{subnet, rangeStart?, rangeEnd?, gateway?}``; raise ValueError if invalid."""
        subnet = ipaddress.ip_network(str(conf["subnet"]), strict=False)
        first, last = _host_bounds(subnet)
        start = ipaddress.ip_address(conf["rangeStart"]) if conf.get("rangeStart") else first
        end = ipaddress.ip_address(conf["rangeEnd"]) if conf.get("rangeEnd") else last
        gateway = ipaddress.ip_address(conf["gateway"]) if conf.get("gateway") else first
        for name, addr in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
            if addr not in subnet:
                raise ValueError(f"{name} {addr} is not in subnet {subnet}")
        if not int(first) <= int(start) <= int(end) <= int(last):
            raise ValueError(f"range {start}-{end} is empty or outside the hosts of {subnet}")
        return cls(subnet, start, end, gateway)

    def contains(self, addr: IPAddress) -> bool:
        """Whether ``addr`` is allocatable from this range (the gateway never is)."""
        same_family = addr.version == self.subnet.version
        return (
            same_family and int(self.start) <= int(addr) <= int(self.end) and addr != self.gateway
        )


def _host_bounds(subnet: IPNetwork) -> tuple[IPAddress, IPAddress]:
    """The first and last usable host of ``subnet`` (no network or broadcast address)."""
    if subnet.num_addresses <= 2:
        return subnet[0], subnet[-1]
    last = subnet[-1] if subnet.version == 6 else subnet[-2]
    return subnet[1], last


class RangeSet(NamedTuple):
    """Ranges of one address family; an allocation takes one address from the set."""

    ranges: tuple[IpRange, ...]

    @classmethod
    def from_config(cls, conf: Sequence[Mapping[str, Any]]) -> RangeSet:
        if not conf:
            raise ValueError("a range set needs at least one range")
        ranges = tuple(IpRange.from_config(entry) for entry in conf)
        if len({r.subnet.version for r in ranges}) != 1:
            raise ValueError("a range set mixes IPv4 and IPv6")
        return cls(ranges)

    def range_of(self, addr: IPAddress) -> IpRange | None:
        """The range ``addr`` was allocated from, if any."""
        return next((r for r in self.ranges if r.contains(addr)), None)

    def walk(self, last: IPAddress | None) -> Iterator[IPAddress]:
        """Every allocatable address once, starting just after ``last`` (round robin)."""
        spans = [(int(r.start), int(r.end), r) for r in self.ranges]
        at, begin = 0, spans[0][0]
        owner = self.range_of(last) if last is not None else None
        if last is not None and owner is not None:
            at, begin = self.ranges.index(owner), int(last) + 1
        order = [spans[(at + k) % len(spans)] for k in range(len(spans))]
        pieces = [(begin, order[0][1], order[0][2])]
        pieces += [(low, high, r) for low, high, r in order[1:]]
        pieces.append((order[0][0], begin - 1, order[0][2]))
        for low, high, r in pieces:
            make = ipaddress.IPv4Address if r.subnet.version == 4 else ipaddress.IPv6Address
            for value in range(low, high + 1):
                if value != int(r.gateway):
                    yield make(value)

    def next_free(self, reserved: set[str], last: IPAddress | None) -> IPAddress | None:
        """The first address after ``last`` that is not in ``reserved``; None when full."""
        return next((addr for addr in self.walk(last) if str(addr) not in reserved), None)


class Allocation(NamedTuple):
    """An address handed to a container, with the range it came from."""

    address: IPAddress
    range: IpRange

    @property
    def cidr(self) -> str:
        """``address/prefixlen``, as results and ``ip addr add`` want it."""
        return f"{self.address}/{self.range.subnet.prefixlen}"


def owner_record(container_id: str, ifname: str) -> str:
    """The content of a reservation file."""
    return f"{container_id.strip()}\n{ifname}"


def parse_owner(text: str) -> tuple[str, str]:
    """``(container id, ifname)`` from a reservation file (the ifname may be absent)."""
    lines = text.strip().splitlines()
    return (lines[0].strip() if lines else "", lines[1].strip() if len(lines) > 1 else "")


class HostLocalStore:
    """The reservations of one network on disk; call the methods inside ``lock()``."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network or network.startswith("."):
            raise ValueError(f"invalid network name {network!r}")
        self.dir = os.path.join(data_dir, network)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the network's exclusive lock (blocks until other execs are done)."""
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def reservations(self) -> dict[str, tuple[str, str]]:
        """``{ip: (container id, ifname)}`` of every reserved address."""
        found: dict[str, tuple[str, str]] = {}
        for name in os.listdir(self.dir) if os.path.isdir(self.dir) else []:
            if name == LOCK_FILE or name.startswith(LAST_RESERVED_PREFIX):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    found[name] = parse_owner(f.read())
            except (FileNotFoundError, IsADirectoryError):
                continue
        return found

    def reserve(self, addr: IPAddress, owner: str, range_set_index: int) -> bool:
        """Claim ``addr`` for ``owner``; False if someone holds it already."""
        path = os.path.join(self.dir, str(addr))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(owner)
        self._write(f"{LAST_RESERVED_PREFIX}{range_set_index}", str(addr))
        return True

    def last_reserved(self, range_set_index: int) -> IPAddress | None:
        """The address last handed out from range set ``range_set_index``."""
        try:
            with open(os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_set_index}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def release(self, addr: str) -> None:
        """Forget the reservation of ``addr`` (a missing one is already released)."""
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, addr))

    def _write(self, name: str, content: str) -> None:
        tmp = os.path.join(self.dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, os.path.join(self.dir, name))


def held_by(
    reservations: Mapping[str, tuple[str, str]], container_id: str, ifname: str
) -> list[str]:
    """The addresses ``container_id``/``ifname`` holds, sorted."""
    owner = (container_id.strip(), ifname)
    return sorted(addr for addr, held in reservations.items() if held == owner)


def allocate(
    store: HostLocalStore, range_sets: Sequence[RangeSet], container_id: str, ifname: str
) -> list[Allocation]:
    """Reserve one address per range set for the container; all or nothing. Hold the lock."""
    reservations = store.reservations()
    held = held_by(reservations, container_id, ifname)
    if held:
        raise DuplicateAllocation(
            f"{', '.join(held)} has been allocated to {container_id}, "
            "duplicate allocation is not allowed"
        )
    taken: list[Allocation] = []
    owner = owner_record(container_id, ifname)
    try:
        for index, range_set in enumerate(range_sets):
            taken.append(_take(store, range_set, index, set(reservations), owner))
    except IpamError:
        for allocation in taken:
            store.release(str(allocation.address))
        raise
    return taken


def _take(
    store: HostLocalStore, range_set: RangeSet, index: int, reserved: set[str], owner: str
) -> Allocation:
    last = store.last_reserved(index)
    while (addr := range_set.next_free(reserved, last)) is not None:
        if store.reserve(addr, owner, index):
            ip_range = range_set.range_of(addr)
            assert ip_range is not None
            return Allocation(addr, ip_range)
        reserved.add(str(addr))
    raise RangeExhausted(f"no IP addresses available in range set {index}")


def release(store: HostLocalStore, container_id: str, ifname: str) -> list[str]:
    """Release every address the container+ifname holds; return them. Hold the lock."""
    held = held_by(store.reservations(), container_id, ifname)
    for addr in held:
        store.release(addr)
    return held


def normalise_cidr(cidr: str) -> str:
    """A canonical CIDR string; raises ValueError for anything else."""
    return str(ipaddress.ip_network(cidr, strict=False))
