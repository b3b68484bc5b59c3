"""What `unistack up` was asked for about this host: runtime, pod network, service ports.

Recorded in `DIR/settings.json` by `up` and read back by `serve agent|registry|dns` and by
`down`, so every process of one state directory agrees. The defaults are a single host's:
bridge `unistack0`, pods in 10.244.0.0/24, the registry on :5000, the agent on :10250 and DNS
on :53. Tests (and a second instance on the same host) pick other names and ports.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, fields
from typing import Any

from unistack.cli.statedir import StateDir

DRIVERS = {"auto": "auto", "linux": "runc", "fake": "fake"}


@dataclass(frozen=True)
class HostOptions:
    driver: str = "auto"
    node_name: str = ""
    bridge: str = "unistack0"
    pod_cidr: str = "10.244.0.0/24"
    registry_port: int = 5000
    agent_port: int = 10250
    dns_port: int = 53
    cluster_dns: str = "10.96.0.10"
    openstack_port: int = 8080
    openstack_workers: int = 1
    instances: str = "auto"  # auto: servers run for real where the agent can; fake: state only
    public_cidr: str = "172.24.4.0/24"  # the public network; the host gets its first address
    hosts: int = 1  # extra hosts are network namespaces with their own agents (cli.hosts)
    hosts_cidr: str = "10.254.0.0/24"  # the underlay joining the hosts
    vxlan_port: int = 4789  # tenant networks' tunnels between hosts; one per cloud on a machine
    nbd_port: int = 10809  # each host serves its volumes to the others' servers on it (NBD)
    # pods: the OpenStack APIs run as pods from a ControlPlane (`cli.selfhost`); processes:
    # as one supervised process. `up` resolves auto to pods where the agent runs containers.
    control_plane: str = "auto"

    @property
    def self_hosted(self) -> bool:
        return self.control_plane == "pods"

    @property
    def openstack_url(self) -> str:
        return f"http://127.0.0.1:{self.openstack_port}"

    @property
    def cluster_cidr(self) -> str:
        """The /16 around this node's pod CIDR: every node's pods."""
        return str(ipaddress.ip_network(self.pod_cidr).supernet(new_prefix=16))

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def load(state: StateDir) -> HostOptions:
    return HostOptions.from_json(state.load_settings().get("host") or {})
