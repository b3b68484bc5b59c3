"""The public network every cloud starts with, as DevStack makes it: network `public`
(external, flat on physical network `public`, owned by the admin project) with subnet
`public-subnet` 172.24.4.0/24, gateway 172.24.4.1, pool 172.24.4.2-254.

Idempotent and safe with several workers: the ids are stable (uuid5), so whoever creates
first wins and the others see AlreadyExists.
"""

from __future__ import annotations

import contextlib
import uuid

from unistack.iaas.network import ipam
from unistack.iaas.network.kinds import NETWORKS, SUBNETS
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Duplicate, Obj, Records

NAMESPACE = uuid.UUID("0f3c2a52-5d4e-4c1a-9a57-7c0f5e1d2b61")
PUBLIC_CIDR = "172.24.4.0/24"
PUBLIC_GATEWAY = "172.24.4.1"
PHYSICAL_NETWORK = "public"


def public_network_id() -> str:
    return str(uuid.uuid5(NAMESPACE, "network/public"))


def public_subnet_id() -> str:
    return str(uuid.uuid5(NAMESPACE, "subnet/public-subnet"))


def network_spec(project_id: str) -> Obj:
    return stamp_new(
        {
            "project_id": project_id,
            "name": "public",
            "description": "",
            "admin_state_up": True,
            "shared": False,
            "router:external": True,
            "is_default": True,
            "mtu": 1500,
            "port_security_enabled": True,
            "availability_zone_hints": [],
            "provider:network_type": "flat",
            "provider:physical_network": PHYSICAL_NETWORK,
            "provider:segmentation_id": None,
        }
    )


def subnet_spec(project_id: str) -> Obj:
    network = ipam.parse_cidr(PUBLIC_CIDR, 4)
    return stamp_new(
        {
            "project_id": project_id,
            "network_id": public_network_id(),
            "name": "public-subnet",
            "description": "",
            "ip_version": 4,
            "cidr": PUBLIC_CIDR,
            "gateway_ip": PUBLIC_GATEWAY,
            "allocation_pools": ipam.default_pools(network, PUBLIC_GATEWAY),
            "enable_dhcp": False,
            "dns_nameservers": [],
            "host_routes": [],
            "ipv6_ra_mode": None,
            "ipv6_address_mode": None,
        }
    )


async def ensure_public_network(records: Records, admin_project_id: str) -> None:
    """Create the public network and its subnet unless they exist."""
    if records.get(NETWORKS, public_network_id()) is None:
        with contextlib.suppress(Duplicate):
            await records.create(NETWORKS, public_network_id(), network_spec(admin_project_id))
    if records.get(SUBNETS, public_subnet_id()) is None:
        with contextlib.suppress(Duplicate):
            await records.create(SUBNETS, public_subnet_id(), subnet_spec(admin_project_id))
