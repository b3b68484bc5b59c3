"""Names of what tenant networking creates on a host, derived from OpenStack ids alone.

Every agent, and `unistack down` after a crash, can find a network's bridge or a port's device
from the id without a lookup table. Interface names are 15 characters, the kernel's limit:
`unistack`, one letter saying what the device is, and 6 hex characters of the id (the id's own
first 6 hex digits when it is a UUID, as Neutron's `tap<port id[:11]>`; a hash otherwise). The
letter is not a hex digit, so these never collide with the pod veths of `bridge.py`
(`unistack` + 7 hex): `n` bridge, `x` VXLAN, `p` instance port, `r` router port, `h` DHCP
port. Used by `tenantnet` (bridges, VXLAN, ports), `secgroups` (per-port chains) and the
agent's router and DHCP namespaces.
"""

from __future__ import annotations

import hashlib
import re

BRIDGE_PREFIX = "unistackn"
VXLAN_PREFIX = "unistackx"
PORT_PREFIX = "unistackp"
ROUTER_PORT_PREFIX = "unistackr"
DHCP_PORT_PREFIX = "unistackh"  # not "d": a hex digit, as in pod veths
DEVICE_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, PORT_PREFIX, ROUTER_PORT_PREFIX, DHCP_PORT_PREFIX)

SERVER_NETNS_PREFIX = "unistack-server-"
ROUTER_NETNS_PREFIX = "unistack-router-"
DHCP_NETNS_PREFIX = "unistack-dhcp-"

_HEX6 = re.compile(r"^[0-9a-f]{6}")
_DEVICE = re.compile(r"^unistack[nxprh][0-9a-f]{6}$")
_NETNS_ID = re.compile(r"^[A-Za-z0-9_.-]{1,180}$")


def short_id(openstack_id: str) -> str:
    """6 lowercase hex characters standing for `openstack_id`."""
    compact = openstack_id.lower().replace("-", "")
    if _HEX6.match(compact):
        return compact[:6]
    return hashlib.sha256(openstack_id.encode()).hexdigest()[:6]


def bridge_name(network_id: str) -> str:
    """The network's bridge on every host: `unistackn` + 6 hex."""
    return BRIDGE_PREFIX + short_id(network_id)


def vxlan_name(network_id: str) -> str:
    """The network's VXLAN device, a port of its bridge: `unistackx` + 6 hex."""
    return VXLAN_PREFIX + short_id(network_id)


def port_device(port_id: str) -> str:
    """An instance port's host end (veth or tap) in the bridge: `unistackp` + 6 hex."""
    return PORT_PREFIX + short_id(port_id)


def router_port_device(port_id: str) -> str:
    """A router interface's bridge end: `unistackr` + 6 hex of the port id."""
    return ROUTER_PORT_PREFIX + short_id(port_id)


def dhcp_port_device(port_id: str) -> str:
    """A DHCP server's bridge end: `unistackh` + 6 hex of the port id."""
    return DHCP_PORT_PREFIX + short_id(port_id)


def is_tenant_device(name: str) -> bool:
    """Whether `name` is one of the devices tenant networking makes."""
    return _DEVICE.match(name) is not None


def _netns(prefix: str, openstack_id: str) -> str:
    if not _NETNS_ID.match(openstack_id):
        raise ValueError(f"id {openstack_id!r} cannot be part of a namespace name")
    return prefix + openstack_id


def server_netns(server_id: str) -> str:
    """The network namespace of a container instance: `unistack-server-<server id>`."""
    return _netns(SERVER_NETNS_PREFIX, server_id)


def router_netns(router_id: str) -> str:
    """A router's namespace: `unistack-router-<router id>`."""
    return _netns(ROUTER_NETNS_PREFIX, router_id)


def dhcp_netns(network_id: str) -> str:
    """A network's DHCP namespace: `unistack-dhcp-<network id>`."""
    return _netns(DHCP_NETNS_PREFIX, network_id)
