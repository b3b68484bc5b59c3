"""The network kinds, group `network.unistack.io`, namespaced per project.

`metadata.name` is the OpenStack id (a dashed lowercase UUID); the Neutron attributes live in
`spec` under their Neutron names. Objects of the admin-owned public network live in the admin
project's namespace like any other. `Allocation` objects are the race-free IPAM and
segmentation-id registry: one object per taken address (`<subnet-id>.<ip>`) or VXLAN id
(`vni.<n>`), all in the shared namespace, so two writers asking for the same one get
AlreadyExists from the API server and move on to the next.
"""

from __future__ import annotations

from unistack.iaas.crds import Kind

GROUP = "network.unistack.io"

NETWORKS = Kind(GROUP, "Network", "networks", namespaced=True, short_names=("osnet",))
SUBNETS = Kind(
    GROUP,
    "Subnet",
    "subnets",
    namespaced=True,
    columns=(("Display-Name", ".spec.name"), ("CIDR", ".spec.cidr")),
)
PORTS = Kind(
    GROUP,
    "Port",
    "ports",
    namespaced=True,
    short_names=("osport",),
    columns=(("Display-Name", ".spec.name"), ("MAC", ".spec.mac_address")),
)
ROUTERS = Kind(GROUP, "Router", "routers", namespaced=True)
FLOATING_IPS = Kind(
    GROUP,
    "FloatingIP",
    "floatingips",
    namespaced=True,
    columns=(("Address", ".spec.floating_ip_address"), ("Port", ".spec.port_id")),
)
SECURITY_GROUPS = Kind(GROUP, "SecurityGroup", "securitygroups", namespaced=True)
SECURITY_GROUP_RULES = Kind(
    GROUP,
    "SecurityGroupRule",
    "securitygrouprules",
    namespaced=True,
    columns=(("Direction", ".spec.direction"), ("Protocol", ".spec.protocol")),
)
SUBNET_POOLS = Kind(GROUP, "SubnetPool", "subnetpools", namespaced=True)
METERING_LABELS = Kind(GROUP, "MeteringLabel", "meteringlabels", namespaced=True)
METERING_LABEL_RULES = Kind(
    GROUP,
    "MeteringLabelRule",
    "meteringlabelrules",
    namespaced=True,
    columns=(("Direction", ".spec.direction"), ("Prefix", ".spec.remote_ip_prefix")),
)
QUOTAS = Kind(GROUP, "NetworkQuota", "networkquotas", namespaced=True, columns=())
ALLOCATIONS = Kind(
    GROUP,
    "Allocation",
    "allocations",
    namespaced=True,
    columns=(("Subnet", ".spec.subnet_id"), ("Owner", ".spec.owner")),
)

ALL = (
    NETWORKS,
    SUBNETS,
    PORTS,
    ROUTERS,
    FLOATING_IPS,
    SECURITY_GROUPS,
    SECURITY_GROUP_RULES,
    SUBNET_POOLS,
    METERING_LABELS,
    METERING_LABEL_RULES,
    QUOTAS,
    ALLOCATIONS,
)
