"""Service cluster IPs and node ports, allocated when a Service is written.

As kube-apiserver's Service REST storage does: a Service gets its `spec.clusterIP` from the
service CIDR and its ports their `nodePort`s from 30000-32767 before it is stored, and gives
them back when it is deleted. The allocated sets are derived from the stored Services: `load`
rebuilds them at start-up, and `ServiceAllocationHooks` (a `handlers.WriteHooks`) keeps them
current. `prepare` reserves, `committed` releases what the old object held and the new one
does not, and `abandoned` returns what `prepare` reserved for a write that never happened
(dry run, lost race, AlreadyExists). The process is one asyncio thread, so no lock is needed.

Neighbours: `handlers` calls the hooks, `app` wires them next to `crds.CrdHooks`,
`bootstrap` creates the `kubernetes` Service on the first address.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import Any

from unistack import store as storage
from unistack.apiserver import codec, errors
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORTS = (30000, 32767)
NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")
_RANDOM_TRIES = 32


class NotInRange(Exception):
    pass


class AlreadyAllocated(Exception):
    pass


class RangeFull(Exception):
    pass


class RangeAllocator:
    """Integers `first..last`; random picks prefer those above the static band, which is left
    for requested values (kube's dynamic/static split)."""

    def __init__(
        self, first: int, last: int, *, static_band: int = 0, rng: random.Random | None = None
    ) -> None:
        self.first, self.last = first, last
        self.static_band = min(static_band, last - first + 1)
        self.rng = rng or random.Random()
        self.allocated: set[int] = set()

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def allocate(self, value: int) -> None:
        if not self.first <= value <= self.last:
            raise NotInRange(value)
        if value in self.allocated:
            raise AlreadyAllocated(value)
        self.allocated.add(value)

    def allocate_next(self) -> int:
        if len(self.allocated) >= self.size:
            raise RangeFull()
        split = self.first + self.static_band
        value = self._free_in(split, self.last)
        if value is None:
            value = self._free_in(self.first, split - 1)
        assert value is not None, "a range that is not full has a free value"
        self.allocated.add(value)
        return value

    def _free_in(self, low: int, high: int) -> int | None:
        if high < low:
            return None
        for _ in range(_RANDOM_TRIES):
            value = self.rng.randint(low, high)
            if value not in self.allocated:
                return value
        start = self.rng.randint(low, high)
        for offset in range(high - low + 1):
            value = low + (start - low + offset) % (high - low + 1)
            if value not in self.allocated:
                return value
        return None

    def mark(self, value: int) -> None:
        """Record a value already in use (a stored object), in range or not."""
        self.allocated.add(value)

    def release(self, value: int) -> None:
        self.allocated.discard(value)


class ServiceIPAllocator:
    """Addresses of one IPv4 service CIDR, without its network and broadcast addresses."""

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, rng: random.Random | None = None):
        self.network = ipaddress.IPv4Network(cidr)
        first, last = int(self.network.network_address) + 1, int(self.network.broadcast_address) - 1
        band = min(max(16, self.network.num_addresses // 16), 256)
        self.range = RangeAllocator(first, last, static_band=band, rng=rng)

    def first_address(self) -> str:
        return str(ipaddress.IPv4Address(self.range.first))

    def allocate(self, ip: str) -> None:
        """Take `ip`, or raise ValueError with kube's reason."""
        try:
            self.range.allocate(int(ipaddress.IPv4Address(ip)))
        except (NotInRange, ipaddress.AddressValueError):
            raise ValueError(
                f"the provided IP ({ip}) is not in the valid range. "
                f"The range of valid IPs is {self.network}"
            ) from None
        except AlreadyAllocated:
            raise ValueError("provided IP is already allocated") from None

    def allocate_next(self) -> str:
        return str(ipaddress.IPv4Address(self.range.allocate_next()))

    def mark(self, ip: str) -> None:
        if _is_ipv4(ip):
            self.range.mark(int(ipaddress.IPv4Address(ip)))

    def release(self, ip: str) -> None:
        if _is_ipv4(ip):
            self.range.release(int(ipaddress.IPv4Address(ip)))


class NodePortAllocator:
    """Node ports `first..last` (kube's --service-node-port-range)."""

    def __init__(
        self, ports: tuple[int, int] = DEFAULT_NODE_PORTS, rng: random.Random | None = None
    ):
        first, last = ports
        band = min(max(16, (last - first + 1) // 32), 128)
        self.range = RangeAllocator(first, last, static_band=band, rng=rng)

    def allocate(self, port: int) -> None:
        """Take `port`, or raise ValueError with kube's reason."""
        try:
            self.range.allocate(port)
        except NotInRange:
            raise ValueError(
                "provided port is not in the valid range. "
                f"The range of valid ports is {self.range.first}-{self.range.last}"
            ) from None
        except AlreadyAllocated:
            raise ValueError("provided port is already allocated") from None

    def allocate_next(self) -> int:
        return self.range.allocate_next()

    def mark(self, port: int) -> None:
        self.range.mark(port)

    def release(self, port: int) -> None:
        self.range.release(port)


def _is_ipv4(ip: str) -> bool:
    try:
        ipaddress.IPv4Address(ip)
    except ipaddress.AddressValueError:
        return False
    return True


# -- what a Service holds --------------------------------------------------------------------


def _spec(service: Obj | None) -> Obj:
    spec = (service or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: Obj) -> list[Obj]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(spec: Obj) -> bool:
    kind = spec.get("type")
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is False:
        return False
    return kind in NEEDS_NODE_PORTS


def held_ip(service: Obj | None) -> str | None:
    """The cluster IP a stored Service holds, if any."""
    spec = _spec(service)
    ip = spec.get("clusterIP")
    return ip if needs_cluster_ip(spec) and isinstance(ip, str) and _is_ipv4(ip) else None


def held_node_ports(service: Obj | None) -> set[int]:
    ports = (p.get("nodePort") for p in _ports(_spec(service)))
    return {p for p in ports if isinstance(p, int) and not isinstance(p, bool) and p > 0}


# -- carrying allocations over an update -----------------------------------------------------


def keep_allocated(old: Obj, new: Obj) -> None:
    """An update that omits the cluster IP or a node port keeps the old one, as kube's
    `patchAllocatedValues` does."""
    old_spec, new_spec = _spec(old), _spec(new)
    omitted = new_spec.get("type") != "ExternalName" and not new_spec.get("clusterIP")
    if omitted and _has_cluster_ip_field(old_spec):
        new_spec["clusterIP"] = old_spec["clusterIP"]
        new_spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    if needs_node_ports(new_spec):
        _keep_node_ports(_ports(old_spec), _ports(new_spec))


def _has_cluster_ip_field(spec: Obj) -> bool:
    return bool(spec.get("clusterIP")) and spec.get("type") != "ExternalName"


def _keep_node_ports(old_ports: list[Obj], new_ports: list[Obj]) -> None:
    by_port = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_ports}
    for port in new_ports:
        if port.get("nodePort") in (None, 0):
            kept = by_port.get((port.get("port"), port.get("protocol")))
            if kept:
                port["nodePort"] = kept


# -- the hooks -------------------------------------------------------------------------------


def _is_service(rt: ResourceType) -> bool:
    return rt.group == "" and rt.kind == "Service"


class ServiceAllocationHooks(WriteHooks):
    """Reserve a Service's cluster IP and node ports before it is written; release them
    when it is deleted or no longer needs them."""

    def __init__(self, ips: ServiceIPAllocator, node_ports: NodePortAllocator) -> None:
        self.ips = ips
        self.node_ports = node_ports

    def prepare(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if not _is_service(rt):
            return
        if old is not None:
            keep_allocated(old, new)
        taken: list[tuple[str, Any]] = []
        try:
            self._assign_ip(old, new, taken)
            self._assign_node_ports(old, new, taken)
        except BaseException:
            self._give_back(taken)
            raise

    def committed(self, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        if not _is_service(rt):
            return
        self.record(new)
        self._release_unheld(old, new)

    def abandoned(self, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if _is_service(rt):
            self._release_unheld(new, old)

    def record(self, service: Obj | None) -> None:
        """Mark what a stored Service holds as taken."""
        ip = held_ip(service)
        if ip:
            self.ips.mark(ip)
        for port in held_node_ports(service):
            self.node_ports.mark(port)

    def _release_unheld(self, holder: Obj | None, keeper: Obj | None) -> None:
        """Release what `holder` holds and `keeper` does not."""
        ip = held_ip(holder)
        if ip and ip != held_ip(keeper):
            self.ips.release(ip)
        for port in held_node_ports(holder) - held_node_ports(keeper):
            self.node_ports.release(port)

    def _assign_ip(self, old: Obj | None, new: Obj, taken: list[tuple[str, Any]]) -> None:
        spec = _spec(new)
        if not needs_cluster_ip(spec):
            return
        requested = spec.get("clusterIP")
        if requested and requested == held_ip(old):
            return
        if requested:
            self._take_requested_ip(new, str(requested))
        else:
            spec["clusterIP"] = self._next_ip()
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec["ipFamilies"] = ["IPv4"]
        taken.append(("ip", spec["clusterIP"]))

    def _take_requested_ip(self, service: Obj, ip: str) -> None:
        try:
            self.ips.allocate(ip)
        except ValueError as exc:
            problem = errors.invalid_field(
                "spec.clusterIPs", (ip,), f"failed to allocate IP {ip}: {exc}"
            )
            raise _invalid(service, problem) from None

    def _next_ip(self) -> str:
        try:
            return self.ips.allocate_next()
        except RangeFull:
            raise errors.internal("failed to allocate a serviceIP: range is full") from None

    def _assign_node_ports(self, old: Obj | None, new: Obj, taken: list[tuple[str, Any]]) -> None:
        spec = _spec(new)
        if not needs_node_ports(spec):
            return
        already = held_node_ports(old)
        for i, port in enumerate(_ports(spec)):
            wanted = port.get("nodePort")
            if wanted in (None, 0):
                port["nodePort"] = self._next_node_port()
            elif wanted not in already:
                self._take_requested_port(new, i, wanted)
            else:
                continue
            taken.append(("port", port["nodePort"]))

    def _take_requested_port(self, service: Obj, index: int, port: int) -> None:
        try:
            self.node_ports.allocate(port)
        except ValueError as exc:
            problem = errors.invalid_field(f"spec.ports[{index}].nodePort", port, str(exc))
            raise _invalid(service, problem) from None

    def _next_node_port(self) -> int:
        try:
            return self.node_ports.allocate_next()
        except RangeFull:
            raise errors.internal("failed to allocate a nodePort: range is full") from None

    def _give_back(self, taken: Iterable[tuple[str, Any]]) -> None:
        for what, value in taken:
            if what == "ip":
                self.ips.release(value)
            else:
                self.node_ports.release(value)


def _invalid(service: Obj, problem: errors.FieldError) -> errors.ApiError:
    name = str(service.get("metadata", {}).get("name") or "")
    return errors.invalid("Service", "", name, [problem])


async def load(store: storage.ObjectStore, rt: ResourceType, hooks: ServiceAllocationHooks) -> None:
    """Rebuild the allocated sets from every stored Service."""
    result = await store.list(rt.prefix(None))
    for stored in result.items:
        hooks.record(codec.load(stored.value))
