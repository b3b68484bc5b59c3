"""The public network's identity per cloud: its ids and gateway follow the public CIDR."""

from __future__ import annotations

import uuid

from unistack.iaas.network import bootstrap


def test_default_cidr_keeps_the_historical_ids() -> None:
    assert bootstrap.public_network_id() == str(uuid.uuid5(bootstrap.NAMESPACE, "network/public"))
    assert bootstrap.public_gateway() == bootstrap.PUBLIC_GATEWAY


def test_each_public_cidr_has_its_own_network_and_gateway() -> None:
    other = "172.24.10.0/24"
    assert bootstrap.public_network_id(other) != bootstrap.public_network_id()
    assert bootstrap.public_subnet_id(other) != bootstrap.public_subnet_id()
    assert bootstrap.public_gateway(other) == "172.24.10.1"
    spec = bootstrap.subnet_spec("admin", other)
    assert spec["cidr"] == other and spec["gateway_ip"] == "172.24.10.1"
    assert spec["network_id"] == bootstrap.public_network_id(other)
    assert spec["allocation_pools"] == [{"start": "172.24.10.2", "end": "172.24.10.254"}]
