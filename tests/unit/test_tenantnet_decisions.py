"""tenantnet's pure decisions (observed links → `ip`/`bridge` lines) and FakeL2."""

from __future__ import annotations

from typing import Any

import pytest

from unistack.dataplane import tenantnet
from unistack.dataplane.tenantnet import FakeL2, Link, NetworkWiring, PortWiring

NET = "5d1c2a8e-0000-4000-8000-000000000001"
BR, VX = "unistackn5d1c2a", "unistackx5d1c2a"
VXLAN = NetworkWiring(NET, vni=77, mtu=1450, local_ip="10.7.0.1", peers=("10.7.0.2",))
PORT = PortWiring("aabbccdd-1111", NET, "fa:16:3e:00:00:01", 1450)
BRIDGE_DATA = {"stp_state": 0, "forward_delay": 0, "nf_call_iptables": 1, "nf_call_ip6tables": 1}
VXLAN_DATA = {"id": 77, "local": "10.7.0.1", "port": 4789, "learning": True}


def link(name: str, kind: str, master: str | None = None, **data: Any) -> Link:
    return Link(name, kind, master, 1450, True, True, data)


def settled() -> dict[str, Link]:
    return {BR: link(BR, "bridge", **BRIDGE_DATA), VX: link(VX, "vxlan", BR, **VXLAN_DATA)}


def test_a_new_network_gets_its_bridge_and_vxlan_in_one_batch() -> None:
    lines, fresh = tenantnet.network_lines(VXLAN, {})
    assert fresh
    assert lines == [
        f"link add {BR} type bridge stp_state 0 forward_delay 0"
        " nf_call_iptables 1 nf_call_ip6tables 1",
        f"link set {BR} mtu 1450",
        f"link set {BR} addrgenmode none",
        f"link set {BR} up",
        f"link add {VX} type vxlan id 77 dstport 4789 local 10.7.0.1 learning",
        f"link set {VX} mtu 1450",
        f"link set {VX} addrgenmode none",
        f"link set {VX} master {BR}",
        f"link set {VX} up",
    ]


def test_a_settled_network_needs_nothing() -> None:
    assert tenantnet.network_lines(VXLAN, settled()) == ([], False)


def test_only_what_differs_is_corrected() -> None:
    links = settled()
    links[BR] = links[BR]._replace(mtu=1500, up=False, data={**BRIDGE_DATA, "stp_state": 1})
    lines, _ = tenantnet.network_lines(VXLAN, links)
    assert lines == [
        f"link set {BR} type bridge stp_state 0 forward_delay 0"
        " nf_call_iptables 1 nf_call_ip6tables 1",
        f"link set {BR} mtu 1450",
        f"link set {BR} up",
    ]


def test_a_vxlan_with_another_vni_is_recreated_and_without_vni_removed() -> None:
    links = settled()
    links[VX] = links[VX]._replace(data={**VXLAN_DATA, "id": 78})
    lines, fresh = tenantnet.network_lines(VXLAN, links)
    assert fresh and lines[0] == f"link delete {VX}"
    assert lines[1].startswith(f"link add {VX} type vxlan id 77")
    flat = NetworkWiring(NET, vni=None, mtu=1450)
    assert tenantnet.network_lines(flat, settled()) == ([f"link delete {VX}"], False)
    no_underlay = NetworkWiring(NET, vni=77, mtu=1450, local_ip=None)
    assert not tenantnet.wants_vxlan(no_underlay)


def test_flood_entries_are_made_equal_to_the_peers() -> None:
    lines = tenantnet.fdb_lines(VX, {"10.7.0.2", "10.7.0.9"}, ("10.7.0.2", "10.7.0.3"))
    assert lines == [
        f"fdb append 00:00:00:00:00:00 dev {VX} dst 10.7.0.3",
        f"fdb del 00:00:00:00:00:00 dev {VX} dst 10.7.0.9",
    ]
    assert tenantnet.fdb_lines(VX, {"10.7.0.2"}, ("10.7.0.2",)) == []


def test_flood_peers_are_read_from_all_zero_entries_only() -> None:
    entries = [
        {"mac": "00:00:00:00:00:00", "dst": "10.7.0.2", "state": "permanent"},
        {"mac": "fa:16:3e:00:00:05", "dst": "10.7.0.2"},
        {"mac": "00:00:00:00:00:00"},
    ]
    assert tenantnet.parse_flood_peers(entries) == {"10.7.0.2"}


def test_links_are_parsed_from_ip_json() -> None:
    entry = {
        "ifname": VX,
        "flags": ["BROADCAST", "UP"],
        "mtu": 1450,
        "master": BR,
        "inet6_addr_gen_mode": "none",
        "linkinfo": {"info_kind": "vxlan", "info_data": VXLAN_DATA},
    }
    parsed = tenantnet.parse_links([entry, {"ifname": "lo", "flags": ["LOOPBACK"]}])
    assert parsed[VX] == link(VX, "vxlan", BR, **VXLAN_DATA)
    assert parsed["lo"].kind == "" and not parsed["lo"].up


def test_a_veth_port_is_created_with_its_peer_in_the_instance() -> None:
    lines = tenantnet.veth_lines(PORT, "/run/netns/i1", "eth0", None)
    assert lines[0] == (
        "link add unistackpaabbcc type veth peer name eth0"
        " address fa:16:3e:00:00:01 mtu 1450 netns /run/netns/i1"
    )
    assert lines[-2:] == [f"link set unistackpaabbcc master {BR}", "link set unistackpaabbcc up"]
    plugged = link("unistackpaabbcc", "veth", BR)
    assert tenantnet.veth_lines(PORT, "/run/netns/i1", "eth0", plugged) == []


def test_a_tap_port_replaces_a_leftover_of_another_kind() -> None:
    leftover = link("unistackpaabbcc", "veth", BR)
    lines = tenantnet.tap_lines(PORT, leftover)
    assert lines[:2] == [
        "link delete unistackpaabbcc",
        "tuntap add dev unistackpaabbcc mode tap vnet_hdr user 0",
    ]
    tap = link("unistackpaabbcc", "tun", BR, type="tap", vnet_hdr=True, multi_queue=False)
    assert tenantnet.tap_lines(PORT, tap) == []
    assert tenantnet.delete_line(tap) == "tuntap del dev unistackpaabbcc mode tap"


def test_cleanup_removes_ports_before_vxlan_before_bridges_and_nothing_else() -> None:
    links = {
        **settled(),
        "unistackpaabbcc": link("unistackpaabbcc", "veth", BR),
        "unistack1234567": link("unistack1234567", "veth", "unistack0"),  # a pod veth
        "eth0": link("eth0", "veth"),
    }
    assert [lk.name for lk in tenantnet.cleanup_order(links)] == ["unistackpaabbcc", VX, BR]


def test_the_fake_tracks_networks_and_ports() -> None:
    fake = FakeL2()
    with pytest.raises(LookupError):
        fake.plug_tap(PORT)
    fake.ensure_network(VXLAN)
    fake.plug_veth(PORT, "/run/netns/i1", "eth0")
    assert fake.list_devices() == [BR, "unistackpaabbcc", VX]
    assert fake.ports[PORT.port_id].kind == "veth"
    fake.unplug(PORT.port_id)
    fake.cleanup_all()
    assert fake.list_devices() == []
    assert [name for name, _ in fake.calls] == [
        "plug_tap",
        "ensure_network",
        "plug_veth",
        "unplug",
        "cleanup_all",
    ]
