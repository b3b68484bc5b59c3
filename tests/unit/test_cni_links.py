"""The ip/nft scripts the data plane runs, built without running them."""

from __future__ import annotations

from unistack.dataplane import bridge, iproute, masquerade

VETH = bridge.VethSpec(
    host_name="unistackabcdef0",
    ifname="eth0",
    netns="/run/netns/unistack-x",
    mac="0a:58:0a:f4:00:05",
    addresses=("10.244.0.5/24",),
    routes=(bridge.Route("0.0.0.0/0", "10.244.0.1"),),
    mtu=1450,
)


def test_host_veth_name_is_stable_and_fits_the_kernel_limit() -> None:
    name = bridge.host_veth_name("container", "eth0")
    assert name == bridge.host_veth_name("container", "eth0")
    assert name != bridge.host_veth_name("container", "eth1")
    assert name.startswith("unistack") and len(name) == 15


def test_mac_derives_from_ipv4() -> None:
    assert bridge.mac_for("10.244.0.5") == "0a:58:0a:f4:00:05"
    assert bridge.mac_for(None).startswith("0a:58:")


def test_bridge_is_created_only_when_missing() -> None:
    spec = bridge.BridgeSpec("unistack0", ("10.244.0.1/24",))
    assert bridge.bridge_lines(spec, exists=False) == [
        "link add unistack0 type bridge",
        "address replace 10.244.0.1/24 dev unistack0",
        "link set unistack0 up",
    ]
    assert bridge.bridge_lines(spec, exists=True)[0].startswith("address replace")


def test_veth_is_born_inside_the_netns_and_plugged_in_hairpin() -> None:
    assert bridge.veth_lines("unistack0", VETH) == [
        "link add unistackabcdef0 mtu 1450 type veth peer name eth0 address 0a:58:0a:f4:00:05"
        " mtu 1450 netns /run/netns/unistack-x",
        "link set unistackabcdef0 master unistack0",
        "link set dev unistackabcdef0 type bridge_slave hairpin on",
        "link set unistackabcdef0 up",
    ]


def test_pod_side_gets_loopback_address_and_routes() -> None:
    assert bridge.pod_lines(VETH) == [
        "link set lo up",
        "address add 10.244.0.5/24 dev eth0",
        "link set eth0 up",
        "route replace 0.0.0.0/0 via 10.244.0.1 dev eth0",
    ]


def test_ip_argv_uses_names_for_run_netns_and_nsenter_otherwise() -> None:
    assert iproute.ip_argv(None) == ["ip"]
    assert iproute.ip_argv("unistack-a") == ["ip", "-n", "unistack-a"]
    assert iproute.ip_argv("/var/run/netns/unistack-a") == ["ip", "-n", "unistack-a"]
    assert iproute.ip_argv("/proc/42/ns/net") == ["nsenter", "--net=/proc/42/ns/net", "ip"]


def test_masquerade_table_is_replaced_atomically() -> None:
    script = masquerade.ruleset("unistack0", ["10.244.0.0/24"], ["10.244.0.0/16"])
    lines = script.splitlines()
    assert lines[:2] == [
        "table ip unistack-cni-unistack0 {}",
        "delete table ip unistack-cni-unistack0",
    ]
    assert (
        "ip saddr 10.244.0.0/24 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
        in script
    )
