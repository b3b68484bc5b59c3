"""secgroups: security group rules and port security rendered as nftables text (no I/O)."""

from __future__ import annotations

import ipaddress

import pytest

from unistack.dataplane import secgroups
from unistack.dataplane.nftables import FakeNftables
from unistack.dataplane.secgroups import AddressPair, PortFilter, SecurityRule

MAC = "fa:16:3e:00:00:01"
DEVICE = "unistackpaaaaaa"


def port(*rules: SecurityRule, **changes: object) -> PortFilter:
    fields: dict[str, object] = {
        "device": DEVICE,
        "mac": MAC,
        "fixed_ips": ("10.0.0.5",),
        "rules": rules,
    }
    return PortFilter(**{**fields, **changes})  # type: ignore[arg-type]


def chain(text: str, name: str) -> list[str]:
    """The rule lines of chain `name` in a rendered table."""
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{") + 1
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start:end]]


def rule(rule: SecurityRule, verdict: str = "accept") -> str | None:
    return secgroups.rule_line(rule, verdict)


def test_each_filtered_port_gets_one_jump_per_direction() -> None:
    text = secgroups.render_table([port(), port(device="unistackpbbbbbb", mac="fa:16:3e:00:00:02")])
    assert text.startswith("table bridge unistack-sg {\n")
    assert '"unistackpaaaaaa" : jump egress-unistackpaaaaaa' in text
    assert '"unistackpbbbbbb" : jump ingress-unistackpbbbbbb' in text
    assert chain(text, "forward") == [
        "type filter hook forward priority filter; policy accept;",
        "iifname vmap @egress-ports",
        "oifname vmap @ingress-ports",
    ]
    assert chain(text, "input")[1:] == ["iifname vmap @egress-ports"]


def test_a_port_without_port_security_is_not_filtered() -> None:
    text = secgroups.render_table([port(port_security_enabled=False)])
    assert DEVICE not in text
    assert "map egress-ports {\n\t\ttype ifname : verdict\n\t}" in text  # an empty map is valid


def set_elements(text: str, name: str) -> str:
    """The `elements = {...}` line of set `name` ("" when it has none)."""
    lines = text.splitlines()
    start = lines.index(f"\tset {name} {{") + 1
    end = lines.index("\t}", start)
    found = [line.strip() for line in lines[start:end] if "elements" in line]
    return found[0] if found else ""


def test_the_shared_spoof_chain_checks_mac_arp_and_sources_by_device() -> None:
    text = secgroups.render_table([port()])
    lines = chain(text, "egress-spoof")
    assert lines[:4] == [
        "iifname . ether saddr != @port-macs drop",
        "ether type != @ethertypes drop",
        "iifname . arp saddr ether . arp saddr ip @port-sources-ip return",
        "ether type arp drop",
    ]
    dhcp_discover = "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return"
    spoof = "iifname . ether saddr . ip saddr != @port-sources-ip drop"
    assert lines.index(dhcp_discover) < lines.index(spoof)
    assert set_elements(text, "port-macs") == f'elements = {{ "{DEVICE}" . {MAC} }}'
    assert (
        set_elements(text, "port-sources-ip") == f'elements = {{ "{DEVICE}" . {MAC} . 10.0.0.5 }}'
    )


def test_egress_checks_spoofing_then_servers_then_state_then_rules() -> None:
    lines = chain(
        secgroups.render_table([port(SecurityRule("egress", protocol="tcp"))]), f"egress-{DEVICE}"
    )
    assert lines[0] == "jump egress-spoof"
    assert lines.index("meta protocol ip udp sport 67 udp dport 68 drop") < lines.index(
        "meta protocol ip udp sport 68 udp dport 67 return"
    )
    assert "icmpv6 type nd-router-advert drop" in lines
    assert lines[-4:] == [
        "meta mark & 0x00400000 != 0 drop",
        "meta mark & 0x00200000 != 0 return",
        "meta protocol ip meta l4proto tcp return",
        "drop",
    ]


def test_ipv6_sources_include_the_link_local_address_of_the_mac() -> None:
    assert str(secgroups.link_local(MAC)) == "fe80::f816:3eff:fe00:1"
    text = secgroups.render_table([port(fixed_ips=("10.0.0.5", "fd00::5"))])
    own = f'"{DEVICE}" . {MAC}'
    assert set_elements(text, "port-sources-ip6") == (
        f"elements = {{ {own} . fd00::5, {own} . fe80::f816:3eff:fe00:1 }}"
    )


def test_allowed_address_pairs_widen_the_source_check_with_their_own_mac() -> None:
    pairs = (AddressPair("10.0.1.0/24"), AddressPair("10.0.2.7", "FA:16:3E:00:00:09"))
    text = secgroups.render_table([port(allowed_address_pairs=pairs)])
    other = "fa:16:3e:00:00:09"
    assert set_elements(text, "port-macs") == (
        f'elements = {{ "{DEVICE}" . {MAC}, "{DEVICE}" . {other} }}'
    )
    assert set_elements(text, "port-sources-ip") == (
        f'elements = {{ "{DEVICE}" . {MAC} . 10.0.0.5, "{DEVICE}" . {MAC} . 10.0.1.0/24,'
        f' "{DEVICE}" . {other} . 10.0.2.7 }}'
    )


def test_overlapping_sources_are_merged_for_the_interval_set() -> None:
    pairs = (AddressPair("10.0.0.0/24"),)
    text = secgroups.render_table([port(allowed_address_pairs=pairs)])
    assert (
        set_elements(text, "port-sources-ip")
        == f'elements = {{ "{DEVICE}" . {MAC} . 10.0.0.0/24 }}'
    )


def test_a_port_without_ipv4_has_no_ipv4_source_so_sends_no_ipv4_and_no_arp() -> None:
    text = secgroups.render_table([port(fixed_ips=())])
    assert set_elements(text, "port-sources-ip") == ""
    assert "flags interval" in text  # the empty set still exists for the lookups


def test_ingress_lets_arp_dhcp_and_neighbour_discovery_in_and_drops_the_rest() -> None:
    lines = chain(secgroups.render_table([port()]), f"ingress-{DEVICE}")
    assert lines[:3] == [
        "ether type != @ethertypes drop",
        "ether type arp accept",
        "meta protocol ip udp sport 67 udp dport 68 accept",
    ]
    assert lines[-3:] == [
        "meta mark & 0x00400000 != 0 drop",
        "meta mark & 0x00200000 != 0 accept",
        "drop",
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (SecurityRule("ingress"), "meta protocol ip accept"),
        (SecurityRule("ingress", ethertype="IPv6"), "meta protocol ip6 accept"),
        (
            SecurityRule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
            "meta protocol ip meta l4proto tcp th dport 22 accept",
        ),
        (
            SecurityRule("ingress", protocol="udp", port_range_min=1000, port_range_max=2000),
            "meta protocol ip meta l4proto udp th dport 1000-2000 accept",
        ),
        (
            SecurityRule("ingress", protocol="tcp", port_range_min=1, port_range_max=65535),
            "meta protocol ip meta l4proto tcp accept",
        ),
        (
            SecurityRule("ingress", protocol="icmp", port_range_min=8, port_range_max=0),
            "meta protocol ip meta l4proto icmp icmp type 8 icmp code 0 accept",
        ),
        (
            SecurityRule("ingress", ethertype="IPv6", protocol="icmp", port_range_min=128),
            "meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type 128 accept",
        ),
        (SecurityRule("ingress", protocol="17"), "meta protocol ip meta l4proto udp accept"),
        (SecurityRule("ingress", protocol="gre"), "meta protocol ip meta l4proto 47 accept"),
        (
            SecurityRule("ingress", remote_ip_prefix="192.168.0.0/16"),
            "meta protocol ip ip saddr 192.168.0.0/16 accept",
        ),
        (
            SecurityRule("egress", remote_ip_prefix="192.168.1.7/32"),
            "meta protocol ip ip daddr 192.168.1.7 accept",
        ),
        (SecurityRule("ingress", remote_ip_prefix="0.0.0.0/0"), "meta protocol ip accept"),
    ],
)
def test_rules_render_as_neutron_means_them(given: SecurityRule, expected: str) -> None:
    assert rule(given) == expected


def test_remote_groups_become_named_sets_shared_between_ports() -> None:
    group = SecurityRule(
        "ingress", remote_group_id="sg-1", remote_ips=("10.0.0.6", "10.0.0.5", "fd00::1")
    )
    other = port(group, device="unistackpbbbbbb", mac="fa:16:3e:00:00:02")
    text = secgroups.render_table([port(group), other])
    found = secgroups.remote_set(secgroups.remote_key(group))
    assert found is not None
    name = found.name
    assert name.startswith("remote-ip-sg1-")
    assert text.count(f"set {name} {{") == 1
    assert "elements = { 10.0.0.5, 10.0.0.6 }" in text
    assert f"meta protocol ip ip saddr @{name} accept" in chain(text, f"ingress-{DEVICE}")


def test_a_remote_group_without_members_matches_nothing() -> None:
    empty = SecurityRule("ingress", remote_group_id="sg-1", remote_ips=())
    assert rule(empty) is None
    v6_only = SecurityRule("ingress", remote_group_id="sg-1", remote_ips=("fd00::1",))
    assert rule(v6_only) is None  # an IPv4 rule, no IPv4 member
    text = secgroups.render_table([port(empty)])
    assert "set remote" not in text


def test_duplicate_rules_render_once() -> None:
    lines = chain(
        secgroups.render_table([port(SecurityRule("ingress"), SecurityRule("ingress"))]),
        f"ingress-{DEVICE}",
    )
    assert lines.count("meta protocol ip accept") == 1


@pytest.mark.parametrize(
    "bad",
    [
        SecurityRule("ingress", protocol="nonsense"),
        SecurityRule("ingress", protocol="300"),
        SecurityRule("ingress", protocol="icmpv6"),
        SecurityRule("ingress", ethertype="IPX"),
        SecurityRule("ingress", remote_ip_prefix="fd00::/8"),
    ],
)
def test_impossible_rules_are_refused(bad: SecurityRule) -> None:
    with pytest.raises(ValueError):
        secgroups.rule_line(bad, "accept")


@pytest.mark.parametrize(
    "changes",
    [{"device": 'x" ; flush ruleset'}, {"mac": "not-a-mac"}, {"fixed_ips": ("10.0.0.500",)}],
)
def test_bad_port_data_cannot_reach_the_ruleset(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        secgroups.render_table([port(**changes)])


def test_the_conntrack_table_marks_bridged_packets_with_their_state() -> None:
    text = secgroups.render_conntrack_table()
    assert text.startswith("table inet unistack-sg-ct {")
    assert "type filter hook prerouting priority mangle; policy accept;" in text
    assert 'iifname "unistackn*" meta mark set meta mark & 0xff9fffff' in text
    assert "ct state established,related meta mark set meta mark | 0x00200000" in text
    assert "ct state invalid meta mark set meta mark | 0x00400000" in text


def test_collapse_merges_and_keeps_both_families() -> None:
    nets = [ipaddress.ip_network(n) for n in ("10.0.0.1/32", "10.0.0.0/24", "fd00::/64")]
    assert [str(n) for n in secgroups.collapse(iter(nets))] == ["10.0.0.0/24", "fd00::/64"]


async def test_the_firewall_applies_both_tables_and_removes_them() -> None:
    fake = FakeNftables()
    firewall = secgroups.SecurityGroupFirewall(fake)
    await firewall.apply([port()])
    assert [(family, name) for family, name, _ in fake.applied] == [
        ("inet", "unistack-sg-ct"),
        ("bridge", "unistack-sg"),
    ]
    assert fake.tables[("bridge", "unistack-sg")] == secgroups.render_table([port()])
    await firewall.remove()
    assert fake.tables == {}
