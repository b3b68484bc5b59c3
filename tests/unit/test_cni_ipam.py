"""IPAM decisions: ranges, round-robin order, exhaustion (no disk)."""

from __future__ import annotations

import ipaddress

import pytest

from unistack.dataplane import ipam


def rs(*ranges: dict[str, str]) -> ipam.RangeSet:
    return ipam.RangeSet.from_config(list(ranges))


def ip(text: str) -> ipam.IPAddress:
    return ipaddress.ip_address(text)


def test_range_defaults_skip_network_gateway_and_broadcast() -> None:
    r = ipam.IpRange.from_config({"subnet": "10.213.1.0/24"})
    assert (str(r.start), str(r.end), str(r.gateway)) == (
        "10.213.1.1",
        "10.213.1.254",
        "10.213.1.1",
    )
    assert not r.contains(ip("10.213.1.1"))
    assert r.contains(ip("10.213.1.2"))
    assert not r.contains(ip("10.213.2.2"))


@pytest.mark.parametrize(
    "conf",
    [
        {"subnet": "10.213.1.0/24", "rangeStart": "10.213.2.5"},
        {"subnet": "10.213.1.0/24", "rangeStart": "10.213.1.9", "rangeEnd": "10.213.1.3"},
        {"subnet": "10.213.1.0/24", "gateway": "10.9.9.9"},
        {"subnet": "10.213.1.0/24", "rangeEnd": "10.213.1.255"},
        {"subnet": "not-a-subnet"},
    ],
)
def test_invalid_ranges_are_rejected(conf: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ipam.IpRange.from_config(conf)


def test_first_allocation_is_after_the_gateway() -> None:
    assert str(rs({"subnet": "10.213.1.0/24"}).next_free(set(), None)) == "10.213.1.2"


def test_allocation_goes_round_robin_after_the_last_reserved() -> None:
    pool = rs({"subnet": "10.213.1.0/29"})  # hosts .1-.6, .1 is the gateway
    assert str(pool.next_free(set(), ip("10.213.1.3"))) == "10.213.1.4"
    assert str(pool.next_free({"10.213.1.4"}, ip("10.213.1.3"))) == "10.213.1.5"


def test_allocation_wraps_around_and_skips_the_gateway() -> None:
    pool = rs({"subnet": "10.213.1.0/29"})
    order = [str(a) for a in pool.walk(ip("10.213.1.5"))]
    assert order == ["10.213.1.6", "10.213.1.2", "10.213.1.3", "10.213.1.4", "10.213.1.5"]


def test_a_full_range_set_has_nothing_free() -> None:
    pool = rs({"subnet": "10.213.1.0/30"})  # only .2 is allocatable
    assert pool.next_free({"10.213.1.2"}, None) is None


def test_range_set_walks_every_range_in_turn() -> None:
    pool = rs(
        {"subnet": "10.213.1.0/24", "rangeStart": "10.213.1.10", "rangeEnd": "10.213.1.11"},
        {"subnet": "10.213.2.0/24", "rangeStart": "10.213.2.10", "rangeEnd": "10.213.2.11"},
    )
    order = [str(a) for a in pool.walk(ip("10.213.1.11"))]
    assert order == ["10.213.2.10", "10.213.2.11", "10.213.1.10", "10.213.1.11"]


def test_a_last_reserved_outside_the_set_starts_from_the_beginning() -> None:
    pool = rs({"subnet": "10.213.1.0/24"})
    assert str(pool.next_free(set(), ip("192.168.0.9"))) == "10.213.1.2"


def test_ipv6_ranges_allocate_too() -> None:
    pool = rs({"subnet": "fd00:213::/120"})
    assert str(pool.next_free(set(), None)) == "fd00:213::2"


def test_mixed_families_in_one_set_are_rejected() -> None:
    with pytest.raises(ValueError):
        rs({"subnet": "10.213.1.0/24"}, {"subnet": "fd00::/64"})


def test_owner_records_round_trip_and_tolerate_crlf() -> None:
    assert ipam.parse_owner(ipam.owner_record("abc ", "eth0")) == ("abc", "eth0")
    assert ipam.parse_owner("abc\r\neth1") == ("abc", "eth1")


def test_held_by_matches_container_and_ifname() -> None:
    reservations = {"10.0.0.2": ("a", "eth0"), "10.0.0.3": ("a", "eth1"), "10.0.0.4": ("b", "eth0")}
    assert ipam.held_by(reservations, "a", "eth0") == ["10.0.0.2"]
