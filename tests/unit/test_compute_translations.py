"""How the compute API words other services' objects and checks proxied requests (no I/O)."""

from __future__ import annotations

import pytest

from unistack.openstack.compute.images import properties
from unistack.openstack.compute.security_groups import neutron_rule, rule_view
from unistack.openstack.compute.server_views import host_id
from unistack.openstack.compute.volumes import volume_view
from unistack.openstack.web import OpenStackError


def test_nova_rules_become_neutron_ingress_rules() -> None:
    rule = neutron_rule(
        {"ip_protocol": "TCP", "from_port": 22, "to_port": 23, "cidr": "10.0.0.9/8"}
    )
    assert rule == {
        "direction": "ingress",
        "protocol": "tcp",
        "ethertype": "IPv4",
        "port_range_min": 22,
        "port_range_max": 23,
        "remote_ip_prefix": "10.0.0.0/8",
    }
    icmp = neutron_rule({"ip_protocol": "icmp", "from_port": -1, "to_port": -1})
    assert "port_range_min" not in icmp
    for bad in (
        {"ip_protocol": "gre", "from_port": 1, "to_port": 2},
        {"ip_protocol": "tcp", "from_port": 0, "to_port": 2},
        {"ip_protocol": "tcp", "from_port": 5, "to_port": 2},
        {"ip_protocol": "udp", "from_port": "x", "to_port": 2},
        {"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/99"},
    ):
        with pytest.raises(OpenStackError) as caught:
            neutron_rule(bad)
        assert caught.value.status == 400


def test_neutron_rules_read_as_nova_rules() -> None:
    rule = {"id": "r", "security_group_id": "g", "protocol": "tcp", "remote_group_id": "h"}
    view = rule_view(rule, {"h": "web"})
    assert view["from_port"] == 1 and view["to_port"] == 65535
    assert view["group"]["name"] == "web" and view["ip_range"] == {}


def test_image_properties_are_the_non_core_attributes() -> None:
    image = {"id": "i", "name": "n", "min_ram": 0, "os_distro": "cirros", "kernel_id": None}
    assert properties(image) == {"os_distro": "cirros"}


def test_volume_reads_in_camel_case() -> None:
    volume = {
        "id": "v",
        "size": 2,
        "name": "data",
        "attachments": [{"server_id": "s", "device": "/dev/vdb"}],
    }
    view = volume_view(volume)
    assert view["displayName"] == "data" and view["availabilityZone"] == "nova"
    assert view["attachments"] == [
        {"id": "v", "volumeId": "v", "serverId": "s", "device": "/dev/vdb"}
    ]


def test_host_id_is_per_project_and_empty_without_a_host() -> None:
    assert host_id("p1", None) == ""
    assert host_id("p1", "hv") != host_id("p2", "hv")
    assert len(host_id("p1", "hv")) == 56
