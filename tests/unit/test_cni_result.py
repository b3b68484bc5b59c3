"""ADD results per version, routes with their gateways, and CHECK's comparison."""

from __future__ import annotations

from unistack.dataplane import bridge, ipam
from unistack.integration.cni import result

RANGE = ipam.IpRange.from_config({"subnet": "10.244.0.0/24"})
ALLOC = ipam.Allocation(RANGE.start + 4, RANGE)  # 10.244.0.5
LINKS = result.Links("unistack0", "aa:aa", "unistack1234567", "bb:bb", "eth0", "0a:58", "/ns")


def test_add_result_1_0_0_has_interfaces_ips_routes_and_dns() -> None:
    routes = [bridge.Route("0.0.0.0/0", "10.244.0.1")]
    out = result.render_add("1.0.0", LINKS, [ALLOC], routes, {"nameservers": ["10.96.0.10"]})
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"][2] == {"name": "eth0", "mac": "0a:58", "sandbox": "/ns"}
    assert out["ips"] == [{"address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 2}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}]
    assert out["dns"] == {"nameservers": ["10.96.0.10"]}


def test_older_results_carry_the_ip_version_and_no_empty_dns() -> None:
    out = result.render_add("0.4.0", LINKS, [ALLOC], [], {})
    assert out["ips"][0]["version"] == "4"
    assert "dns" not in out


def test_routes_without_gw_use_the_gateway_and_default_is_added_once() -> None:
    routes = result.effective_routes([bridge.Route("10.96.0.0/12")], [ALLOC], default_gw=True)
    assert routes == [
        bridge.Route("10.96.0.0/12", "10.244.0.1"),
        bridge.Route("0.0.0.0/0", "10.244.0.1"),
    ]
    explicit = [bridge.Route("0.0.0.0/0", "10.244.0.254")]
    assert result.effective_routes(explicit, [ALLOC], default_gw=True) == explicit


def prev() -> dict[str, object]:
    return result.render_add("1.0.0", LINKS, [ALLOC], [bridge.Route("0.0.0.0/0", "10.244.0.1")], {})


def test_expected_reads_the_pod_interface_of_prev_result() -> None:
    expected = result.expected_from(prev(), "eth0", "/ns")
    assert expected.addresses == ("10.244.0.5/24",)
    assert expected.routes == (bridge.Route("0.0.0.0/0", "10.244.0.1"),)


def test_check_passes_when_everything_is_there() -> None:
    expected = result.expected_from(prev(), "eth0", "/ns")
    view = bridge.PodView(
        ("10.244.0.5/24",), (bridge.Route("0.0.0.0/0", "10.244.0.1"),), "unistack0"
    )
    assert result.check_problems(expected, view, "unistack0", ["10.244.0.5"]) == []


def test_check_lists_every_difference() -> None:
    expected = result.expected_from(prev(), "eth0", "/ns")
    view = bridge.PodView((), (), None)
    problems = result.check_problems(expected, view, "unistack0", [])
    assert problems == [
        "host veth not in unistack0",
        "address 10.244.0.5/24 missing",
        "address 10.244.0.5/24 not reserved in IPAM",
        "route 0.0.0.0/0 via 10.244.0.1 missing",
    ]
