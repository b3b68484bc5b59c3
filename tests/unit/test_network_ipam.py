"""Pure IPAM and MAC logic of the network service."""

from __future__ import annotations

import pytest

from unistack.iaas.network import ipam, macs
from unistack.iaas.network.allocations import address_name


def test_defaults_leave_out_network_broadcast_and_gateway() -> None:
    network = ipam.parse_cidr("10.0.0.0/24", 4)
    assert ipam.default_gateway(network) == "10.0.0.1"
    pools = ipam.default_pools(network, "10.0.0.1")
    assert pools == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ipam.pool_size(pools) == 253
    middle = ipam.default_pools(network, "10.0.0.100")
    assert middle == [
        {"start": "10.0.0.1", "end": "10.0.0.99"},
        {"start": "10.0.0.101", "end": "10.0.0.254"},
    ]


def test_bad_cidrs_are_refused() -> None:
    with pytest.raises(ipam.IpamError, match="not a valid IP subnet"):
        ipam.parse_cidr("10.0.0.0/33", 4)
    with pytest.raises(ipam.IpamError, match="not compatible"):
        ipam.parse_cidr("2001:db8::/64", 4)
    with pytest.raises(ipam.IpamError, match="recommended CIDR"):
        ipam.parse_cidr("10.0.0.5/24", 4)
    assert ipam.parse_any_cidr("2001:db8::/64").version == 6
    assert ipam.parse_any_cidr("10.0.0.0/8").version == 4
    with pytest.raises(ipam.IpamError, match="recommended CIDR"):
        ipam.parse_any_cidr("2001:db8::1/64")


def test_pools_are_checked() -> None:
    network = ipam.parse_cidr("10.0.0.0/24", 4)
    with pytest.raises(ipam.IpamError, match="spans beyond"):
        ipam.validate_pools(network, [{"start": "10.0.0.2", "end": "10.0.1.5"}], None)
    overlapping = [
        {"start": "10.0.0.2", "end": "10.0.0.9"},
        {"start": "10.0.0.5", "end": "10.0.0.20"},
    ]
    with pytest.raises(ipam.IpamError, match="overlapping"):
        ipam.validate_pools(network, overlapping, None)
    with pytest.raises(ipam.IpamError, match="conflicts"):
        ipam.validate_pools(network, [{"start": "10.0.0.1", "end": "10.0.0.9"}], "10.0.0.1")


def test_candidates_skip_taken_and_overlap_is_found() -> None:
    pools = [{"start": "10.0.0.2", "end": "10.0.0.5"}]
    assert list(ipam.candidates(pools, {"10.0.0.3"}, 4)) == ["10.0.0.2", "10.0.0.4", "10.0.0.5"]
    network = ipam.parse_cidr("10.0.0.0/24", 4)
    assert ipam.overlapping(network, ["192.168.0.0/24", "10.0.0.128/25"]) == "10.0.0.128/25"
    assert ipam.overlapping(network, ["10.0.1.0/24"]) is None


def test_allocation_names_are_valid_object_names() -> None:
    assert address_name("s", "10.0.0.2") == "s.10.0.0.2"
    assert address_name("s", "2001:db8::") == "s.2001-0db8-0000-0000-0000-0000-0000-0000"


def test_macs() -> None:
    mac = macs.random_mac()
    assert mac.startswith("fa:16:3e:") and macs.valid_mac(mac)
    assert not macs.valid_mac("01:00:00:00:00:01")  # multicast
    assert not macs.valid_mac("nonsense")
    taken = {macs.random_mac()}
    assert macs.unique_mac(lambda m: m in taken) not in taken


def test_eui64_addresses() -> None:
    assert ipam.eui64("2001:db8::/64", "fa:16:3e:11:22:33") == "2001:db8::f816:3eff:fe11:2233"
