"""CNI results: render what ADD created, and read back a ``prevResult`` for CHECK.

The 1.0.0 result lists the interfaces (bridge, host veth, pod interface with its sandbox), the
IPs (with the index of the interface they sit on), the routes and DNS; results for 0.3.x/0.4.0
also carry each IP's ``version``. Pure; used by ``plugin``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, NamedTuple

from unistack.dataplane import bridge, ipam

POD_INTERFACE_INDEX = 2


class Links(NamedTuple):
    """The links ADD made, with their MACs."""

    bridge: str
    bridge_mac: str
    host_veth: str
    host_mac: str
    ifname: str
    mac: str
    sandbox: str


def effective_routes(
    routes: Sequence[bridge.Route], allocations: Sequence[ipam.Allocation], default_gw: bool
) -> list[bridge.Route]:
    """Config routes with their next hop filled in from the gateway of the same family."""
    gateways = {a.address.version: str(a.range.gateway) for a in allocations}
    resolved = [
        bridge.Route(r.dst, r.gw or gateways.get(ipaddress.ip_network(r.dst, False).version))
        for r in routes
    ]
    if default_gw:
        for version, gw in sorted(gateways.items()):
            default = "0.0.0.0/0" if version == 4 else "::/0"
            if all(r.dst != default for r in resolved):
                resolved.append(bridge.Route(default, gw))
    return resolved


def render_add(
    cni_version: str,
    links: Links,
    allocations: Sequence[ipam.Allocation],
    routes: Sequence[bridge.Route],
    dns: dict[str, Any],
) -> dict[str, Any]:
    """The ADD result in ``cni_version``'s shape."""
    result: dict[str, Any] = {
        "cniVersion": cni_version,
        "interfaces": [
            {"name": links.bridge, "mac": links.bridge_mac},
            {"name": links.host_veth, "mac": links.host_mac},
            {"name": links.ifname, "mac": links.mac, "sandbox": links.sandbox},
        ],
        "ips": [_ip(a, cni_version) for a in allocations],
        "routes": [{"dst": r.dst, "gw": r.gw} if r.gw else {"dst": r.dst} for r in routes],
    }
    if dns:
        result["dns"] = dns
    return result


def _ip(allocation: ipam.Allocation, cni_version: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "address": allocation.cidr,
        "gateway": str(allocation.range.gateway),
        "interface": POD_INTERFACE_INDEX,
    }
    if cni_version != "1.0.0":
        entry["version"] = str(allocation.address.version)
    return entry


class Expected(NamedTuple):
    """What a previous ADD says the pod interface has."""

    addresses: tuple[str, ...]
    routes: tuple[bridge.Route, ...]


def expected_from(prev: dict[str, Any], ifname: str, sandbox: str) -> Expected:
    """The addresses and routes ``prev`` promises for ``ifname``; ValueError if it has none."""
    interfaces = prev.get("interfaces") or []
    index = next(
        (
            i
            for i, link in enumerate(interfaces)
            if link.get("name") == ifname and link.get("sandbox") in (sandbox, None)
        ),
        None,
    )
    if index is None:
        raise ValueError(f"prevResult has no interface {ifname} in {sandbox}")
    ips = [ip for ip in prev.get("ips") or [] if ip.get("interface", index) == index]
    routes = [bridge.Route(r["dst"], r.get("gw")) for r in prev.get("routes") or []]
    return Expected(tuple(str(ip["address"]) for ip in ips), tuple(routes))


def same_route(a: bridge.Route, b: bridge.Route) -> bool:
    """Routes equal up to how their destination is spelled."""
    return ipam.normalise_cidr(a.dst) == ipam.normalise_cidr(b.dst) and a.gw == b.gw


def check_problems(
    expected: Expected, view: bridge.PodView, bridge_name: str, reserved: Sequence[str]
) -> list[str]:
    """Every way the pod's plumbing differs from ``expected``; [] when CHECK passes."""
    problems = [] if view.host_master == bridge_name else [f"host veth not in {bridge_name}"]
    for cidr in expected.addresses:
        if cidr not in view.addresses:
            problems.append(f"address {cidr} missing")
        if cidr.split("/")[0] not in reserved:
            problems.append(f"address {cidr} not reserved in IPAM")
    for route in expected.routes:
        if not any(same_route(route, have) for have in view.routes):
            problems.append(f"route {route.dst} via {route.gw} missing")
    return problems
