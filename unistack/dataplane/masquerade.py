"""Source NAT for pods leaving the cluster: one nftables table per bridge.

Table ``unistack-cni-<bridge>`` (family ip) masquerades traffic from the pod subnets to any
destination outside the cluster CIDRs (and not multicast), so pods reach the outside world with
the node's address while pod-to-pod and pod-to-Service traffic keeps its source. The table is
replaced in one ``nft -f -`` transaction, so applying it is idempotent and never leaves a
half-written table. Used by the CNI plugin on ADD when ``ipMasq`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from unistack.dataplane import iproute

TABLE_PREFIX = "unistack-cni-"


def table_name(bridge: str) -> str:
    """The nftables table of ``bridge``."""
    return TABLE_PREFIX + bridge


def ruleset(bridge: str, pod_subnets: Sequence[str], cluster_cidrs: Sequence[str]) -> str:
    """The nft script that (re)creates the table atomically."""
    table = table_name(bridge)
    excluded = " ".join(f"ip daddr != {cidr}" for cidr in [*cluster_cidrs, "224.0.0.0/4"])
    rules = "\n".join(f"    ip saddr {subnet} {excluded} masquerade" for subnet in pod_subnets)
    return (
        f"table ip {table} {{}}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"{rules}\n"
        "  }\n"
        "}\n"
    )


def ensure(bridge: str, pod_subnets: Sequence[str], cluster_cidrs: Sequence[str]) -> None:
    """Install (or replace) the masquerade table of ``bridge``."""
    iproute.nft(ruleset(bridge, pod_subnets, cluster_cidrs))


def remove(bridge: str) -> None:
    """Delete the table of ``bridge``; a missing one is fine."""
    table = table_name(bridge)
    iproute.nft(f"table ip {table} {{}}\ndelete table ip {table}\n")


def exists(bridge: str) -> bool:
    """Whether the table of ``bridge`` is installed."""
    try:
        iproute.run(["nft", "list", "table", "ip", table_name(bridge)])
    except iproute.CommandError:
        return False
    return True
