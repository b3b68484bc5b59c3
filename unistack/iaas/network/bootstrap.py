"""The public network every cloud starts with, as DevStack makes it: network `public`
(external, flat on physical network `public`, owned by the admin project) with subnet
`public-subnet` 172.24.4.0/24, gateway 172.24.4.1, pool 172.24.4.2-254.

The CIDR is the cloud's (`unistack up --public-cidr`): several clouds share one machine (test
clusters, developers), and the host carries each one's external network as a bridge named after
the network id with the subnet's gateway address (`unistack.dataplane.routers`). So the ids
derive from the CIDR too — the default CIDR keeps the historical ids — and two clouds with
different CIDRs never share a bridge; the gateway is the CIDR's first address.

Idempotent and safe with several workers: the ids are stable (uuid5), so whoever creates
first wins and the others see AlreadyExists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid

from unistack.iaas.network import ipam
from unistack.iaas.network.kinds import NETWORKS, SUBNETS
from unistack.iaas.network.stamps import stamp_new
from unistack.iaas.records import Duplicate, Obj, Records

NAMESPACE = uuid.UUID("0f3c2a52-5d4e-4c1a-9a57-7c0f5e1d2b61")
PUBLIC_CIDR = "172.24.4.0/24"
PUBLIC_GATEWAY = "172.24.4.1"
PHYSICAL_NETWORK = "public"


def _suffix(cidr: str) -> str:
    return "" if cidr == PUBLIC_CIDR else f"/{cidr}"


def public_network_id(cidr: str = PUBLIC_CIDR) -> str:
    """The public network's id in a cloud whose external subnet is `cidr`."""
    return str(uuid.uuid5(NAMESPACE, "network/public" + _suffix(cidr)))


def public_subnet_id(cidr: str = PUBLIC_CIDR) -> str:
    return str(uuid.uuid5(NAMESPACE, "subnet/public-subnet" + _suffix(cidr)))


def public_gateway(cidr: str = PUBLIC_CIDR) -> str:
    """The first address of `cidr`: the host's address on the external network."""
    return str(next(ipaddress.ip_network(cidr).hosts()))


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


def subnet_spec(project_id: str, cidr: str = PUBLIC_CIDR) -> Obj:
    network = ipam.parse_cidr(cidr, 4)
    gateway = public_gateway(cidr)
    return stamp_new(
        {
            "project_id": project_id,
            "network_id": public_network_id(cidr),
            "name": "public-subnet",
            "description": "",
            "ip_version": 4,
            "cidr": str(network),
            "gateway_ip": gateway,
            "allocation_pools": ipam.default_pools(network, gateway),
            "enable_dhcp": False,
            "dns_nameservers": [],
            "host_routes": [],
            "ipv6_ra_mode": None,
            "ipv6_address_mode": None,
        }
    )


async def ensure_public_network(
    records: Records, admin_project_id: str, cidr: str = PUBLIC_CIDR
) -> None:
    """Create the public network and its subnet (on `cidr`) unless they exist."""
    network_id, subnet_id = public_network_id(cidr), public_subnet_id(cidr)
    if records.get(NETWORKS, network_id) is None:
        with contextlib.suppress(Duplicate):
            await records.create(NETWORKS, network_id, network_spec(admin_project_id))
    if records.get(SUBNETS, subnet_id) is None:
        with contextlib.suppress(Duplicate):
            await records.create(SUBNETS, subnet_id, subnet_spec(admin_project_id, cidr))
