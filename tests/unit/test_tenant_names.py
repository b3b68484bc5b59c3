"""tenantnames: device and namespace names derived from OpenStack ids."""

from __future__ import annotations

import re

import pytest

from unistack.dataplane import bridge, tenantnames

NETWORK = "5D1C2A8E-0000-4000-8000-000000000001"
PORT = "aabbccdd-1111-4222-8333-444455556666"


def test_device_names_take_the_first_six_hex_digits_of_a_uuid() -> None:
    assert tenantnames.bridge_name(NETWORK) == "unistackn5d1c2a"
    assert tenantnames.vxlan_name(NETWORK) == "unistackx5d1c2a"
    assert tenantnames.port_device(PORT) == "unistackpaabbcc"
    assert tenantnames.router_port_device(PORT) == "unistackraabbcc"
    assert tenantnames.dhcp_port_device(PORT) == "unistackhaabbcc"


def test_ids_that_are_not_hex_are_hashed_deterministically() -> None:
    name = tenantnames.port_device("port-one")
    assert re.fullmatch(r"unistackp[0-9a-f]{6}", name)
    assert name == tenantnames.port_device("port-one")
    assert name != tenantnames.port_device("port-two")


def test_every_name_fits_the_kernel_limit_and_is_recognised() -> None:
    makers = (
        tenantnames.bridge_name,
        tenantnames.vxlan_name,
        tenantnames.port_device,
        tenantnames.router_port_device,
        tenantnames.dhcp_port_device,
    )
    for make in makers:
        for source in (NETWORK, PORT, "x", "a" * 200):
            name = make(source)
            assert len(name) == 15
            assert tenantnames.is_tenant_device(name)


def test_tenant_devices_never_look_like_pod_veths() -> None:
    pod = bridge.host_veth_name("container", "eth0")
    assert not tenantnames.is_tenant_device(pod)
    for prefix in tenantnames.DEVICE_PREFIXES:
        assert prefix[len("unistack")] not in "0123456789abcdef"
    assert not tenantnames.is_tenant_device("unistack0")
    assert not tenantnames.is_tenant_device("eth0")


def test_namespace_names_carry_the_whole_id() -> None:
    assert tenantnames.server_netns(PORT) == f"unistack-server-{PORT}"
    assert tenantnames.router_netns("r1") == "unistack-router-r1"
    assert tenantnames.dhcp_netns(NETWORK) == f"unistack-dhcp-{NETWORK}"


@pytest.mark.parametrize("bad", ["", "../etc", "a b", "x" * 300])
def test_ids_unfit_for_a_namespace_name_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        tenantnames.server_netns(bad)
