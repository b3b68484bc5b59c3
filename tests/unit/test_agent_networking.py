"""The agent's L2 decisions: which networks a host wires, with which peers, and each local
port's resolved security group rules."""

from __future__ import annotations

from typing import Any

from unistack.agent import networking
from unistack.dataplane import secgroups, tenantnames

Obj = dict[str, Any]
NET, OTHER_NET = "11111111-aaaa-4bbb-8ccc-000000000001", "22222222-aaaa-4bbb-8ccc-000000000002"
DEFAULT, WEB = "sg-default", "sg-web"


def node(name: str, ip: str) -> Obj:
    addresses = [{"type": "InternalIP", "address": ip}]
    return {"metadata": {"name": name}, "status": {"addresses": addresses}}


def network(network_id: str, vni: int | None = 7, mtu: int = 1450, **extra: Any) -> Obj:
    spec: Obj = {"mtu": mtu, "provider:network_type": "vxlan" if vni else "flat", **extra}
    if vni:
        spec["provider:segmentation_id"] = vni
    return {"metadata": {"name": network_id}, "spec": spec}


def public(network_id: str = OTHER_NET) -> Obj:
    return network(
        network_id, None, 1500, **{"router:external": True, "provider:physical_network": "public"}
    )


def uplink(obj: Obj) -> Obj:
    annotations = {networking.UPLINK_ANNOTATION: "true"}
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}


def port(port_id: str, host: str, network_id: str = NET, ip: str = "10.0.0.5", **spec: Any) -> Obj:
    body = {
        "network_id": network_id,
        "binding:host_id": host,
        "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"subnet_id": "s", "ip_address": ip}],
        "device_owner": "compute:nova",
        "security_groups": [DEFAULT],
    }
    body.update(spec)
    return {"metadata": {"name": port_id}, "spec": body}


def rule(group: str, direction: str, **spec: Any) -> Obj:
    fields = {"security_group_id": group, "direction": direction, "ethertype": "IPv4"}
    return {"spec": {**fields, **spec}}


NODES = [node("h1", "192.0.2.1"), node("h2", "192.0.2.2"), node("h3", "192.0.2.3")]


def test_a_lone_host_wires_its_networks_without_a_tunnel() -> None:
    wanted = networking.wanted_networks(
        "h1", "192.0.2.1", [port("p1", "h1")], [network(NET)], NODES
    )
    assert list(wanted) == [NET]
    assert wanted[NET].vni is None and wanted[NET].local_ip is None and wanted[NET].peers == ()
    assert wanted[NET].mtu == 1450


def test_hosts_sharing_a_network_flood_to_each_other_over_vxlan() -> None:
    ports = [port("p1", "h1"), port("p2", "h2"), port("p3", "h3", OTHER_NET)]
    wanted = networking.wanted_networks(
        "h1", "192.0.2.1", ports, [network(NET, 7), network(OTHER_NET, 8)], NODES
    )
    assert list(wanted) == [NET]  # h1 has no port on the other network
    assert (wanted[NET].vni, wanted[NET].local_ip, wanted[NET].peers) == (
        7,
        "192.0.2.1",
        ("192.0.2.2",),
    )


def test_a_flat_network_without_a_physical_network_never_tunnels() -> None:
    ports = [port("p1", "h1"), port("p2", "h2"), port("p3", "")]  # unbound ports do not count
    wanted = networking.wanted_networks("h1", "192.0.2.1", ports, [network(NET, None)], NODES)
    assert wanted[NET].vni is None and wanted[NET].peers == ("192.0.2.2",)


def test_hosts_on_a_flat_network_join_it_on_its_physical_networks_vni() -> None:
    ports = [port("p1", "h1", OTHER_NET), port("p2", "h2", OTHER_NET)]
    wanted = networking.wanted_networks("h1", "192.0.2.1", ports, [public()], NODES)
    vni = networking.physical_vni("public")
    assert networking.PHYSICAL_VNI_FIRST <= vni <= networking.PHYSICAL_VNI_LAST
    assert vni != networking.physical_vni("physnet2")
    assert (wanted[OTHER_NET].vni, wanted[OTHER_NET].peers) == (vni, ("192.0.2.2",))
    assert wanted[OTHER_NET].mtu == 1500


def test_an_external_network_reaches_the_uplink_from_any_hosts_router() -> None:
    nodes = [uplink(NODES[0]), *NODES[1:]]
    ports = [port("gw", "h2", OTHER_NET, device_owner="network:router_gateway")]
    # the uplink has no port there, yet carries the network, joined to the router's host
    on_uplink = networking.wanted_networks("h1", "192.0.2.1", ports, [public()], nodes, uplink=True)
    assert on_uplink[OTHER_NET].peers == ("192.0.2.2",)
    assert on_uplink[OTHER_NET].vni == networking.physical_vni("public")
    on_router = networking.wanted_networks("h2", "192.0.2.2", ports, [public()], nodes)
    assert on_router[OTHER_NET].peers == ("192.0.2.1",)
    # a host with nothing there does not carry it, and nobody does before a port is bound
    assert networking.wanted_networks("h3", "192.0.2.3", ports, [public()], nodes) == {}
    assert networking.wanted_networks("h1", "192.0.2.1", [], [public()], nodes, uplink=True) == {}
    # a tenant (not external) flat network is not stretched to the uplink
    flat = network(OTHER_NET, None, **{"provider:physical_network": "x"})
    assert networking.wanted_networks("h1", "192.0.2.1", ports, [flat], nodes, uplink=True) == {}


def test_the_uplink_is_the_first_host_announcing_it() -> None:
    nodes = [NODES[0], uplink(NODES[1]), uplink(NODES[2])]
    assert networking.uplink_host("h3", True, nodes) == "h2"
    assert networking.uplink_host("h1", True, nodes) == "h1"
    assert networking.uplink_host("h2", False, nodes) == "h3"  # its own say wins over its Node
    assert networking.uplink_host("h1", False, NODES) is None


def test_port_filters_resolve_remote_groups_to_member_addresses() -> None:
    ports = [
        port("p1", "h1", ip="10.0.0.5"),
        port("p2", "h2", ip="10.0.0.6"),  # another host's member of the default group
        port("p3", "h1", ip="10.0.0.7", security_groups=[WEB]),
        port("dhcp", "h1", ip="10.0.0.2", device_owner="network:dhcp", security_groups=[]),
    ]
    rules = [
        rule(DEFAULT, "ingress", remote_group_id=DEFAULT),
        rule(DEFAULT, "egress"),
        rule(WEB, "ingress", protocol="tcp", port_range_min=80, port_range_max=80),
    ]
    filters = {f.device: f for f in networking.port_filters("h1", ports, rules)}
    assert set(filters) == {tenantnames.port_device("p1"), tenantnames.port_device("p3")}
    first = filters[tenantnames.port_device("p1")]
    assert first.fixed_ips == ("10.0.0.5",) and first.mac == "fa:16:3e:00:00:01"
    ingress = [r for r in first.rules if r.direction == "ingress"]
    assert ingress[0].remote_ips == ("10.0.0.5", "10.0.0.6")
    web = filters[tenantnames.port_device("p3")]
    assert web.rules == (secgroups.SecurityRule("ingress", "IPv4", "tcp", 80, 80, None, None, ()),)


def test_port_security_off_and_address_pairs_reach_the_filter() -> None:
    pairs = [{"ip_address": "10.0.0.100", "mac_address": None}]
    ports = [port("p1", "h1", port_security_enabled=False, allowed_address_pairs=pairs)]
    (only,) = networking.port_filters("h1", ports, [])
    assert not only.port_security_enabled
    assert only.allowed_address_pairs == (secgroups.AddressPair("10.0.0.100", None),)


def test_recorded_networks_survive_a_missing_or_broken_record(tmp_path: Any) -> None:
    record = tmp_path / "networks.json"
    assert networking.recorded_networks(record) == []
    record.write_text("[not json")
    assert networking.recorded_networks(record) == []
    record.write_text(f'["{NET}"]')
    assert networking.recorded_networks(record) == [NET]
