"""The DHCP agent's decisions without I/O: which host serves a network, the DHCP port to
make, bind, readdress or delete, and the dnsmasq wiring of a served network."""

from __future__ import annotations

from typing import Any

from unistack.agent import dhcp, dhcpports, l3
from unistack.dataplane.dhcp import DhcpHost, DhcpSubnet

Obj = dict[str, Any]
NET, OTHER_NET = "n0000000-0000-4000-8000-000000000001", "n0000000-0000-4000-8000-000000000002"


def obj(name: str, spec: Obj, **meta: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": "p", **meta}, "spec": spec}


def node(name: str) -> Obj:
    return {"metadata": {"name": name, "annotations": {l3.DRIVERS_ANNOTATION: "container"}}}


def subnet(name: str, network: str, cidr: str, **spec: Any) -> Obj:
    return obj(name, {"network_id": network, "cidr": cidr, "ip_version": 4, **spec})


def port(name: str, network: str, fixed: list[tuple[str, str]], **spec: Any) -> Obj:
    ips = [{"subnet_id": s, "ip_address": ip} for s, ip in fixed]
    body = {"network_id": network, "mac_address": f"fa:16:3e:00:00:{name[-2:]}", "fixed_ips": ips}
    return obj(name, {**body, **spec})


def dhcp_port(name: str, network: str, fixed: list[tuple[str, str]], host: str) -> Obj:
    device = dhcpports.device_id(host, network)
    return port(
        name, network, fixed, device_owner="network:dhcp", device_id=device,
        **{"binding:host_id": host},
    )  # fmt: skip


NETWORKS = [obj(NET, {"mtu": 1400}), obj(OTHER_NET, {})]
SUBNETS = [
    subnet("s-1", NET, "10.0.0.0/24", gateway_ip="10.0.0.1", dns_nameservers=["9.9.9.9"],
           host_routes=[{"destination": "10.8.0.0/16", "nexthop": "10.0.0.8"}]),
    subnet("s-off", OTHER_NET, "10.1.0.0/24", enable_dhcp=False),
    subnet("s-v6", NET, "2001:db8::/64", ip_version=6),
]  # fmt: skip
VM = port("vm-05", NET, [("s-1", "10.0.0.5")], device_owner="compute:nova")
ROUTER = port("ri-09", NET, [("s-1", "10.0.0.1")], device_owner=l3.INTERFACE)


def host_serving(network: str, hosts: list[str]) -> str:
    chosen = l3.router_host(network, sorted(hosts))
    assert chosen is not None
    return chosen


def test_only_dhcp_enabled_ipv4_subnets_of_live_networks_are_served() -> None:
    gone = subnet(
        "s-gone",
        NET,
        "10.2.0.0/24",
    )
    gone["metadata"]["deletionTimestamp"] = "now"
    served = dhcp.dhcp_subnets([*SUBNETS, gone])
    assert {k: [s["metadata"]["name"] for s in v] for k, v in served.items()} == {NET: ["s-1"]}


def test_the_serving_host_creates_the_port_others_do_nothing() -> None:
    nodes = [node("a"), node("b"), node("c")]
    serving = host_serving(NET, ["a", "b", "c"])
    plan = dhcp.plan(serving, NETWORKS, SUBNETS, [VM], nodes)
    assert plan.create == [NET] and not plan.wirings
    for other in {"a", "b", "c"} - {serving}:
        idle = dhcp.plan(other, NETWORKS, SUBNETS, [VM], nodes)
        assert idle.create == [] and idle.wirings == {} and idle.bind == []


def test_a_complete_port_bound_here_is_wired_with_every_other_port_as_a_lease() -> None:
    port_here = dhcp_port("dh-02", NET, [("s-1", "10.0.0.2")], "a")
    plan = dhcp.plan("a", NETWORKS, SUBNETS, [VM, ROUTER, port_here], [])
    assert plan.create == [] and plan.bind == [] and plan.readdress == [] and plan.delete == []
    wiring = plan.wirings[NET]
    assert wiring.port_id == "dh-02" and wiring.mac == "fa:16:3e:00:00:02"
    assert wiring.addresses == ("10.0.0.2/24",) and wiring.mtu == 1400
    assert wiring.hosts == (
        DhcpHost("fa:16:3e:00:00:05", "10.0.0.5"),
        DhcpHost("fa:16:3e:00:00:09", "10.0.0.1"),
    )
    assert wiring.subnets == (
        DhcpSubnet("s-1", "10.0.0.0/24", "10.0.0.1", ("9.9.9.9",),
                   (("10.8.0.0/16", "10.0.0.8"),), metadata_via="10.0.0.1"),
    )  # fmt: skip


def test_a_port_made_by_another_host_is_taken_over() -> None:
    theirs = dhcp_port("dh-02", NET, [("s-1", "10.0.0.2")], "gone-host")
    plan = dhcp.plan("a", NETWORKS, SUBNETS, [theirs], [])
    assert plan.bind == [theirs] and NET in plan.wirings


def test_addresses_follow_the_dhcp_subnets() -> None:
    new = subnet("s-2", NET, "10.3.0.0/24")
    stale = dhcp_port("dh-02", NET, [("s-1", "10.0.0.2"), ("s-old", "10.7.0.2")], "a")
    plan = dhcp.plan("a", NETWORKS, [*SUBNETS, new], [stale], [])
    ((which, add, drop),) = plan.readdress
    assert which is stale and [s["metadata"]["name"] for s in add] == ["s-2"]
    assert drop == [{"subnet_id": "s-old", "ip_address": "10.7.0.2"}]
    assert NET not in plan.wirings  # served once the port has its addresses


def test_ports_of_networks_without_dhcp_are_deleted_and_duplicates_dropped() -> None:
    leftover = dhcp_port("dh-03", OTHER_NET, [("s-off", "10.1.0.2")], "x")
    first = dhcp_port("dh-01", NET, [("s-1", "10.0.0.3")], "x")
    mine = dhcp_port("dh-02", NET, [("s-1", "10.0.0.2")], "a")
    plan = dhcp.plan("a", NETWORKS, SUBNETS, [leftover, first, mine], [])
    assert [p["metadata"]["name"] for p in plan.delete] == ["dh-03", "dh-01"]
    assert plan.wirings[NET].port_id == "dh-02"


def test_a_user_port_with_the_dhcp_owner_is_neither_served_nor_deleted() -> None:
    user = port("us-07", OTHER_NET, [], device_owner="network:dhcp", device_id="mine")
    plan = dhcp.plan("a", NETWORKS, SUBNETS, [user], [])
    assert plan.delete == [] and plan.create == [NET]


def test_port_object_and_allocation_names_match_neutron_and_the_facade() -> None:
    network = obj(NET, {"project_id": "proj", "port_security_enabled": True})
    made = dhcpports.port_object(network, "pid", "a", "fa:16:3e:00:00:01", [])
    spec = made["spec"]
    assert made["metadata"] == {"name": "pid", "namespace": "p"} and made["kind"] == "Port"
    assert spec["device_owner"] == "network:dhcp" and spec["binding:host_id"] == "a"
    assert spec["device_id"].startswith("dhcp") and spec["device_id"].endswith(f"-{NET}")
    assert spec["project_id"] == "proj" and spec["revision_number"] == 0
    assert dhcpports.allocation_name("s", "10.0.0.2") == "s.10.0.0.2"
    assert (
        dhcpports.allocation_name("s", "2001:db8::1") == "s.2001-0db8-0000-0000-0000-0000-0000-0001"
    )
    pools = subnet(
        "s", NET, "10.0.0.0/29", allocation_pools=[{"start": "10.0.0.2", "end": "10.0.0.6"}]
    )
    assert list(dhcpports.free_addresses(pools, {"10.0.0.2", "10.0.0.4"})) == [
        "10.0.0.3", "10.0.0.5", "10.0.0.6",
    ]  # fmt: skip
