"""`unistack up --hosts N`: the names, addresses and pod CIDRs of the extra hosts."""

from __future__ import annotations

import pytest

from unistack.cli import hosts
from unistack.cli.hostoptions import HostOptions


def test_extra_hosts_get_the_underlays_next_addresses_and_the_next_pod_cidrs() -> None:
    options = HostOptions(bridge="unistack0", pod_cidr="10.244.0.0/24", hosts=3)
    extra = hosts.extra_hosts(options, "box")
    assert [(h.index, h.netns, h.address, h.pod_cidr, h.node_name) for h in extra] == [
        (2, "unistack-host-unistack0-2", "10.254.0.2", "10.244.1.0/24", "box-2"),
        (3, "unistack-host-unistack0-3", "10.254.0.3", "10.244.2.0/24", "box-3"),
    ]
    assert hosts.underlay_gateway(options) == "10.254.0.1"
    assert hosts.underlay_bridge(options) == "unistack0u"
    # The machine ends of the veths are interface names: short, and distinct per host.
    assert len({h.veth for h in extra}) == 2
    assert all(len(h.veth) <= 15 and h.veth.startswith("unistacku") for h in extra)
    assert hosts.enter(extra[0]) == ("nsenter", "--net=/run/netns/unistack-host-unistack0-2", "--")


def test_one_host_has_no_extra_hosts_and_a_small_underlay_is_refused() -> None:
    assert hosts.extra_hosts(HostOptions(), "box") == []
    with pytest.raises(ValueError, match="no room"):
        hosts.extra_hosts(HostOptions(hosts=5, hosts_cidr="10.9.0.0/30"), "box")


def test_two_clouds_on_one_machine_name_their_hosts_apart() -> None:
    first = hosts.extra_hosts(HostOptions(bridge="unistacka", hosts=2), "box")[0]
    second = hosts.extra_hosts(HostOptions(bridge="unistackb", hosts=2), "box")[0]
    assert first.netns != second.netns and first.veth != second.veth


def test_the_nodes_of_hosts_no_longer_run_are_retired() -> None:
    names = ["box", "box-2", "box-3", "box-10", "box-x", "other-3", "box-3-extra"]
    assert hosts.retired_nodes(names, "box", 2) == ["box-10", "box-3"]
    assert hosts.retired_nodes(names, "box", 1) == ["box-10", "box-2", "box-3"]
    assert hosts.retired_nodes(names, "box", 10) == []
