"""Router data plane decisions without a kernel: names, `ip` lines, the NAT table."""

from __future__ import annotations

import dataclasses

from unistack.dataplane import routers, tenantnames
from unistack.dataplane.routers import (
    ExternalWiring,
    FakeRouters,
    FloatingIp,
    RouterPort,
    RouterWiring,
)
from unistack.dataplane.tenantnet import Link

PORT_A = "aaaaaaaa-1111-4000-8000-000000000001"
PORT_G = "bbbbbbbb-2222-4000-8000-000000000002"
NET_A, EXT = "11111111-0000-4000-8000-00000000000a", "22222222-0000-4000-8000-00000000000e"
ROUTER = "cccccccc-3333-4000-8000-000000000003"


def wiring(**changes: object) -> RouterWiring:
    base = RouterWiring(
        router_id=ROUTER,
        interfaces=(RouterPort(PORT_A, NET_A, "fa:16:3e:00:00:01", ("10.0.0.1/24",)),),
        gateway=RouterPort(PORT_G, EXT, "fa:16:3e:00:00:02", ("172.24.4.5/24",), 1500),
        gateway_ip="172.24.4.1",
        routes=(("10.9.0.0/16", "10.0.0.200"),),
        floating_ips=(FloatingIp("172.24.4.50", "10.0.0.7"),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def link(name: str, kind: str = "veth", master: str | None = None, mtu: int = 1450) -> Link:
    return Link(name, kind, master, mtu, True, True, {})


def test_inside_names_follow_neutron() -> None:
    assert routers.interface_name(PORT_A) == "qr-aaaaaaaa-11"
    assert routers.gateway_name(PORT_G) == "qg-bbbbbbbb-22"
    assert len(routers.interface_name(PORT_A)) <= 15


def test_host_lines_create_veths_into_the_router_and_enslave_them() -> None:
    lines = routers.host_lines(wiring(), {})
    host_end = tenantnames.router_port_device(PORT_A)
    assert (
        f"link add {host_end} mtu 1450 type veth peer name qr-aaaaaaaa-11 address "
        f"fa:16:3e:00:00:01 mtu 1450 netns unistack-router-{ROUTER}"
    ) in lines
    assert f"link set {host_end} master {tenantnames.bridge_name(NET_A)}" in lines
    gateway_end = tenantnames.router_port_device(PORT_G)
    assert f"link set {gateway_end} master {tenantnames.bridge_name(EXT)}" in lines


def test_host_lines_are_empty_when_all_is_in_place() -> None:
    links = {
        tenantnames.router_port_device(PORT_A): link(
            tenantnames.router_port_device(PORT_A), master=tenantnames.bridge_name(NET_A)
        ),
        tenantnames.router_port_device(PORT_G): link(
            tenantnames.router_port_device(PORT_G), master=tenantnames.bridge_name(EXT), mtu=1500
        ),
    }
    assert routers.host_lines(wiring(), links) == []


def test_inside_lines_remove_stale_ports_and_converge_addresses() -> None:
    links = {
        "lo": link("lo", "", None, 65536),
        "qr-aaaaaaaa-11": link("qr-aaaaaaaa-11"),
        "qr-deadbeef-00": link("qr-deadbeef-00"),
        "qg-bbbbbbbb-22": link("qg-bbbbbbbb-22", mtu=1500),
    }
    macs = {"qr-aaaaaaaa-11": "fa:16:3e:00:00:01", "qg-bbbbbbbb-22": "fa:16:3e:00:00:99"}
    addresses = {"qr-aaaaaaaa-11": {"10.0.0.1/24", "10.0.0.99/24"}, "qg-bbbbbbbb-22": set()}
    lines = routers.inside_lines(wiring(), links, macs, addresses)
    assert lines == [
        "link delete qr-deadbeef-00",
        "link set qg-bbbbbbbb-22 address fa:16:3e:00:00:02",
        "address add 172.24.4.5/24 dev qg-bbbbbbbb-22",
        "address add 172.24.4.50/32 dev qg-bbbbbbbb-22",
        # the link-local address neighbour discovery speaks from, made from the MAC
        "address add fe80::f816:3eff:fe00:2/64 dev qg-bbbbbbbb-22 nodad",
        "address del 10.0.0.99/24 dev qr-aaaaaaaa-11",
        "address add fe80::f816:3eff:fe00:1/64 dev qr-aaaaaaaa-11 nodad",
    ]
    # a dual-stack interface: its IPv6 addresses, once there, are not added again
    dual = dataclasses.replace(
        wiring(gateway=None),
        interfaces=(
            dataclasses.replace(wiring().interfaces[0], addresses=("10.0.0.1/24", "fd00:1::1/64")),
        ),
    )
    settled = {"lo": links["lo"], "qr-aaaaaaaa-11": links["qr-aaaaaaaa-11"]}
    have = {"qr-aaaaaaaa-11": {"10.0.0.1/24", "fd00:1::1/64", "fe80::f816:3eff:fe00:1/64"}}
    assert routers.inside_lines(dual, settled, macs, have) == []


def test_routes_default_via_the_external_gateway_and_static_ones() -> None:
    current = routers.parse_routes(
        [
            {"dst": "default", "gateway": "172.24.4.9", "dev": "qg-bbbbbbbb-22"},
            {"dst": "10.0.0.0/24", "dev": "qr-aaaaaaaa-11"},
            {"dst": "192.168.7.7", "gateway": "10.0.0.3"},
        ]
    )
    assert current == {"default": "172.24.4.9", "192.168.7.7/32": "10.0.0.3"}
    assert routers.route_lines(wiring(), current) == [
        "route del 192.168.7.7/32",
        "route replace 10.9.0.0/16 via 10.0.0.200",
        "route replace default via 172.24.4.1",
    ]
    assert routers.route_lines(wiring(gateway=None), {}) == [
        "route replace 10.9.0.0/16 via 10.0.0.200"
    ]


def test_table_has_metadata_redirect_floating_nat_and_snat() -> None:
    table = routers.render_table(wiring())
    assert 'iifname "qr-*" ip daddr 169.254.169.254 tcp dport 80 redirect to :9697' in table
    assert "ip daddr 172.24.4.50 dnat to 10.0.0.7" in table
    assert 'oifname "qg-bbbbbbbb-22" ip saddr 10.0.0.7 snat to 172.24.4.50' in table
    assert 'oifname "qg-bbbbbbbb-22" ip saddr { 10.0.0.0/24 } snat to 172.24.4.5' in table
    assert 'tcp dport 9697 iifname != "qr-*" drop' in table
    assert 'iifname "qr-*" ct status dnat snat to 172.24.4.5' in table  # hairpin
    # the floating IP's own SNAT comes before the router's
    assert table.index("snat to 172.24.4.50") < table.index("snat to 172.24.4.5\n")


def test_table_without_snat_or_gateway() -> None:
    no_snat = routers.render_table(wiring(snat=False))
    assert "snat to 172.24.4.5\n" not in no_snat and "ct status dnat" not in no_snat
    assert "snat to 172.24.4.50" in no_snat  # floating IPs translate regardless
    isolated = routers.render_table(wiring(gateway=None, metadata_port=None))
    assert "dnat" not in isolated and "snat" not in isolated and "redirect" not in isolated


def test_external_bridge_gets_only_the_gateway_address() -> None:
    ext = ExternalWiring(EXT, "172.24.4.0/24", "172.24.4.1/24")
    bridge = tenantnames.bridge_name(EXT)
    assert routers.external_address_lines(ext, {}) == [f"address add 172.24.4.1/24 dev {bridge}"]
    assert routers.external_address_lines(ext, {bridge: {"172.24.4.1/24"}}) == []
    assert routers.external_address_lines(ext, {bridge: {"10.1.1.1/8", "172.24.4.1/24"}}) == [
        f"address del 10.1.1.1/8 dev {bridge}"
    ]


def test_parse_addresses_keeps_ipv4_and_ipv6_but_not_loopback() -> None:
    entries = [
        {
            "ifname": "qg-x",
            "addr_info": [
                {"family": "inet", "local": "172.24.4.5", "prefixlen": 24},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                {"family": "inet6", "local": "fd00::5", "prefixlen": 64, "scope": "global"},
            ],
        },
        {"ifname": "lo", "addr_info": [{"family": "inet6", "local": "::1", "scope": "host"}]},
    ]
    assert routers.parse_addresses(entries) == {
        "qg-x": {"172.24.4.5/24", "fe80::1/64", "fd00::5/64"},
        "lo": set(),
    }


def test_ipv6_routes_have_their_own_default() -> None:
    current = routers.parse_routes(
        [
            {"dst": "default", "gateway": "fd00::9", "dev": "qg-x"},
            {"dst": "fd00:7::/48", "gateway": "fd00:1::3"},
            {"dst": "fe80::/64", "dev": "qr-x"},
        ]
    )
    assert current == {"::/0": "fd00::9", "fd00:7::/48": "fd00:1::3"}
    # an IPv6 external gateway is the IPv6 default; a static 0.0.0.0/0 is the IPv4 one
    v6_gateway = routers.wanted_routes(wiring(gateway_ip="fd00::1", routes=()))
    assert v6_gateway == {"::/0": "fd00::1"}
    assert routers.wanted_routes(wiring(gateway=None, routes=(("0.0.0.0/0", "10.0.0.9"),))) == {
        "default": "10.0.0.9"
    }
    assert routers.route_lines(wiring(gateway_ip="fd00::1", routes=()), {"::/0": "fd00::1"}) == []
    # kept beside IPv4's default; a v6 route no longer wanted is deleted
    assert routers.route_lines(wiring(), {**current, "default": "172.24.4.1"}) == [
        "route del ::/0",
        "route del fd00:7::/48",
        "route replace 10.9.0.0/16 via 10.0.0.200",
    ]


def test_fake_cleanup_is_scoped_to_the_ids_given() -> None:
    fake = FakeRouters()
    fake.ensure_router(RouterWiring("mine"))
    fake.ensure_router(RouterWiring("theirs"))
    fake.cleanup_all(["mine"])
    assert fake.list_routers() == ["theirs"]


def test_external_masquerade_is_only_for_what_the_host_routes() -> None:
    ext = ExternalWiring(EXT, "172.24.4.0/24", "172.24.4.1/24")
    bridge = tenantnames.bridge_name(EXT)
    table = routers.render_external_table(ext)
    assert table.startswith(f"table ip unistack-ext-{bridge} {{")
    # bridged floating-IP traffic on tenant bridges keeps its external source
    assert (
        f'iifname "{bridge}" oifname != "{bridge}" ip saddr 172.24.4.0/24'
        " ip daddr != 172.24.4.0/24 masquerade"
    ) in table
