"""The cluster IP and node port allocators, and the hooks' reserve/release bookkeeping."""

from __future__ import annotations

import random
from typing import Any

import pytest

from unistack.apiserver import errors, serviceips
from unistack.apiserver.kinds.core_service import SERVICE


def ips(cidr: str = "10.96.0.0/12") -> serviceips.ServiceIPAllocator:
    return serviceips.ServiceIPAllocator(cidr, rng=random.Random(1))


def test_addresses_come_from_the_range_above_the_static_band() -> None:
    allocator = ips()
    got = {allocator.allocate_next() for _ in range(200)}
    assert len(got) == 200
    for ip in got:
        assert ip.startswith(("10.9", "10.10", "10.11"))
        assert ip not in ("10.96.0.0", "10.96.0.1", "10.111.255.255")


def test_first_address_is_the_one_after_the_network_address() -> None:
    assert ips().first_address() == "10.96.0.1"


def test_requested_address_outside_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the provided IP \(10.0.0.1\) is not in the valid range"):
        ips().allocate("10.0.0.1")


def test_requested_address_taken_twice_is_refused() -> None:
    allocator = ips()
    allocator.allocate("10.96.0.10")
    with pytest.raises(ValueError, match="provided IP is already allocated"):
        allocator.allocate("10.96.0.10")


def test_released_address_can_be_taken_again() -> None:
    allocator = ips()
    allocator.allocate("10.96.0.10")
    allocator.release("10.96.0.10")
    allocator.allocate("10.96.0.10")


def test_a_full_range_says_so() -> None:
    allocator = ips("192.168.0.0/29")  # six usable addresses
    got = {allocator.allocate_next() for _ in range(6)}
    assert len(got) == 6
    with pytest.raises(serviceips.RangeFull):
        allocator.allocate_next()


def test_node_ports_are_in_range_and_validated() -> None:
    ports = serviceips.NodePortAllocator((30000, 30009), rng=random.Random(1))
    got = {ports.allocate_next() for _ in range(10)}
    assert got == set(range(30000, 30010))
    with pytest.raises(serviceips.RangeFull):
        ports.allocate_next()
    with pytest.raises(ValueError, match="The range of valid ports is 30000-30009"):
        ports.allocate(80)
    with pytest.raises(ValueError, match="provided port is already allocated"):
        ports.allocate(30000)


def hooks(cidr: str = "10.96.0.0/12") -> serviceips.ServiceAllocationHooks:
    return serviceips.ServiceAllocationHooks(
        ips(cidr), serviceips.NodePortAllocator(rng=random.Random(2))
    )


def service(name: str = "s", **spec: Any) -> dict[str, Any]:
    ports = [{"port": 80, "protocol": "TCP"}]
    return {"metadata": {"name": name}, "spec": {"type": "ClusterIP", "ports": ports, **spec}}


def test_prepare_assigns_an_address_and_abandon_gives_it_back() -> None:
    h = hooks()
    svc = service(clusterIP="10.96.0.10")
    h.prepare(SERVICE, None, svc)
    assert svc["spec"]["clusterIPs"] == ["10.96.0.10"]
    h.abandoned(SERVICE, None, svc)
    h.prepare(SERVICE, None, service(clusterIP="10.96.0.10"))


def test_a_refused_node_port_gives_back_the_address_already_taken() -> None:
    h = hooks()
    h.prepare(SERVICE, None, service("a", type="NodePort", ports=[{"port": 1, "nodePort": 30001}]))
    second = service("b", type="NodePort", clusterIP="10.96.0.20")
    second["spec"]["ports"] = [{"port": 1, "nodePort": 30001}]
    with pytest.raises(errors.ApiError) as exc:
        h.prepare(SERVICE, None, second)
    assert exc.value.code == 422
    assert "spec.ports[0].nodePort: Invalid value: 30001: provided port is" in str(exc.value)
    h.prepare(SERVICE, None, service("c", clusterIP="10.96.0.20"))


def test_wording_of_an_out_of_range_address() -> None:
    with pytest.raises(errors.ApiError) as exc:
        hooks().prepare(SERVICE, None, service(clusterIP="10.0.0.1"))
    assert str(exc.value) == (
        'Service "s" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: '
        "failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid "
        "range. The range of valid IPs is 10.96.0.0/12"
    )


def test_an_exhausted_range_is_an_internal_error_as_in_kube() -> None:
    h = hooks("192.168.0.0/30")  # two usable addresses
    h.prepare(SERVICE, None, service("a"))
    h.prepare(SERVICE, None, service("b"))
    with pytest.raises(errors.ApiError) as exc:
        h.prepare(SERVICE, None, service("c"))
    assert exc.value.code == 500
    assert "range is full" in str(exc.value)


def test_update_keeps_the_address_and_node_ports_and_type_change_releases() -> None:
    h = hooks()
    old = service(type="NodePort")
    h.prepare(SERVICE, None, old)
    h.committed(SERVICE, None, old)
    ip, node_port = old["spec"]["clusterIP"], old["spec"]["ports"][0]["nodePort"]
    new = service(type="NodePort")
    h.prepare(SERVICE, old, new)
    assert new["spec"]["clusterIP"] == ip
    assert new["spec"]["ports"][0]["nodePort"] == node_port
    plain = service(type="ClusterIP")
    h.prepare(SERVICE, new, plain)
    h.committed(SERVICE, new, plain)
    h.node_ports.allocate(node_port)  # free again
    h.committed(SERVICE, plain, None)
    h.ips.allocate(ip)


def test_headless_and_external_name_get_nothing() -> None:
    h = hooks()
    headless = service(clusterIP="None")
    external = {"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x"}}
    h.prepare(SERVICE, None, headless)
    h.prepare(SERVICE, None, external)
    assert headless["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in external["spec"]
    assert not h.ips.range.allocated
