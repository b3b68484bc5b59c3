"""The DHCP data plane's pure parts: dnsmasq's config, hosts and options files, the veth and
the interface inside the namespace, and when dnsmasq is started, restarted or reloaded."""

from __future__ import annotations

from pathlib import Path

from unistack.dataplane import dhcp, tenantnames
from unistack.dataplane.dhcp import DhcpFiles, DhcpHost, DhcpSubnet, DhcpWiring, FileChanges
from unistack.dataplane.tenantnet import Link

NET = "a1b2c3d4-0000-4000-8000-000000000001"
PORT = "d4c3b2a1-0000-4000-8000-000000000002"
FILES = DhcpFiles(Path("/state/dhcp") / NET)
SUBNET = DhcpSubnet(
    "s-1", "10.0.0.0/24", gateway="10.0.0.1", dns_servers=("8.8.8.8", "1.1.1.1"),
    host_routes=(("10.9.0.0/16", "10.0.0.9"),), metadata_via="10.0.0.1",
)  # fmt: skip
WIRING = DhcpWiring(
    NET, PORT, "fa:16:3e:00:00:02", ("10.0.0.2/24",), mtu=1450,
    subnets=(SUBNET, DhcpSubnet("s-0", "192.168.5.0/24"), DhcpSubnet("s-6", "2001:db8::/64")),
    hosts=(DhcpHost("fa:16:3e:00:00:05", "10.0.0.5"), DhcpHost("fa:16:3e:00:00:03", "10.0.0.3")),
)  # fmt: skip


def link(name: str, kind: str = "veth", master: str | None = None, up: bool = True) -> Link:
    return Link(name, kind, master, 1450, up, True, {})


def test_config_serves_dhcp_only_on_the_port_with_static_ranges_per_ipv4_subnet() -> None:
    text = dhcp.render_config(WIRING, FILES)
    lines = text.splitlines()
    assert "port=0" in lines and "bind-interfaces" in lines and "user=nobody" in lines
    assert f"interface=ns-{PORT[:11]}" in lines
    assert f"pid-file={FILES.pid}" in lines and f"dhcp-leasefile={FILES.leases}" in lines
    assert f"dhcp-hostsfile={FILES.hosts}" in lines and f"dhcp-optsfile={FILES.opts}" in lines
    ranges = [line for line in lines if line.startswith("dhcp-range=")]
    assert ranges == [
        "dhcp-range=set:subnet0,192.168.5.0,static,255.255.255.0,86400s",
        "dhcp-range=set:subnet1,10.0.0.0,static,255.255.255.0,86400s",
    ]
    assert "dhcp-option-force=tag:subnet1,option:mtu,1450" in lines
    assert "domain=openstacklocal" in lines
    assert "user=root" in dhcp.render_config(WIRING, FILES, user="root")


def test_hosts_file_has_one_static_lease_per_address() -> None:
    assert dhcp.render_hosts(WIRING) == (
        "fa:16:3e:00:00:03,host-10-0-0-3,10.0.0.3\nfa:16:3e:00:00:05,host-10-0-0-5,10.0.0.5\n"
    )


def test_options_router_dns_classless_routes_and_no_router_without_gateway() -> None:
    lines = dhcp.render_opts(WIRING).splitlines()
    routes = "10.9.0.0/16,10.0.0.9,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1"
    assert lines == [
        "tag:subnet0,option:router",
        "tag:subnet1,option:router,10.0.0.1",
        "tag:subnet1,option:dns-server,8.8.8.8,1.1.1.1",
        f"tag:subnet1,option:classless-static-route,{routes}",
        f"tag:subnet1,249,{routes}",
    ]


def test_classless_routes_keep_an_explicit_default_and_metadata_route() -> None:
    subnet = DhcpSubnet(
        "s", "10.0.0.0/24", gateway="10.0.0.1", metadata_via="10.0.0.1",
        host_routes=(("0.0.0.0/0", "10.0.0.254"), ("169.254.169.254/32", "10.0.0.3")),
    )  # fmt: skip
    assert dhcp.classless_routes(subnet) == [
        ("0.0.0.0/0", "10.0.0.254"),
        ("169.254.169.254/32", "10.0.0.3"),
    ]


def test_host_lines_create_the_veth_into_the_namespace_then_nothing() -> None:
    device = tenantnames.dhcp_port_device(PORT)
    bridge = tenantnames.bridge_name(NET)
    lines = dhcp.host_lines(WIRING, {})
    assert lines[0] == (
        f"link add {device} mtu 1450 type veth peer name ns-{PORT[:11]}"
        f" address fa:16:3e:00:00:02 mtu 1450 netns {tenantnames.dhcp_netns(NET)}"
    )
    assert f"link set {device} master {bridge}" in lines
    assert dhcp.host_lines(WIRING, {device: link(device, master=bridge)}) == []
    assert dhcp.host_lines(WIRING, {device: link(device, kind="tun", master=bridge)})[0] == (
        f"link delete {device}"
    )


def test_inside_lines_replace_a_stale_port_and_fix_addresses() -> None:
    name = f"ns-{PORT[:11]}"
    links = {"lo": link("lo", "", up=False), name: link(name), "ns-old": link("ns-old")}
    macs = {name: "fa:16:3e:00:00:99"}
    lines = dhcp.inside_lines(WIRING, links, macs, {name: {"10.0.0.7/24"}})
    assert lines == [
        "link delete ns-old",
        "link set lo up",
        f"link set {name} address fa:16:3e:00:00:02",
        f"address del 10.0.0.7/24 dev {name}",
        f"address add 10.0.0.2/24 dev {name}",
        f"address add fe80::f816:3eff:fe00:2/64 dev {name} nodad",  # from the MAC
    ]
    settled = {"lo": link("lo", ""), name: link(name)}
    macs = {name: "fa:16:3e:00:00:02"}
    have = {name: {"10.0.0.2/24", "fe80::f816:3eff:fe00:2/64"}}
    assert dhcp.inside_lines(WIRING, settled, macs, have) == []


def test_process_action_start_restart_reload_or_nothing() -> None:
    wanted = {"config": "c", "hosts": "h", "opts": "o"}
    same = dhcp.file_changes(wanted, wanted)
    assert dhcp.process_action(False, same) == "start"
    assert dhcp.process_action(True, same) is None
    hosts = dhcp.file_changes({**wanted, "hosts": "old"}, wanted)
    assert hosts == FileChanges(config=False, reloadable=True)
    assert dhcp.process_action(True, hosts) == "reload"
    config = dhcp.file_changes({**wanted, "config": None}, wanted)
    assert dhcp.process_action(True, config) == "restart"


def test_dnsmasq_drops_to_nobody_only_when_it_can_reach_its_files() -> None:
    assert dhcp.dnsmasq_user([0o40755, 0o40755]) == "nobody"
    assert dhcp.dnsmasq_user([0o40755, 0o40700]) == "root"


def test_fake_records_calls_and_cleans_up_only_what_is_named() -> None:
    fake = dhcp.FakeDhcp()
    fake.ensure(WIRING)
    fake.cleanup(["other", NET])
    assert fake.calls == [("ensure", NET), ("remove", NET)] and fake.list_networks() == []
