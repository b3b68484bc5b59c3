"""The rendered security group tables against the real `nft`: accepted by the kernel, and fast.

`nft -c` checks a many-port ruleset (every rule shape the renderer makes) inside a throwaway
network namespace `unistack-t<hex>-nft`, then the tables for 100 ports are applied for real
there, twice (the second apply replaces the first atomically). Needs root and `nft`; skipped
with the reason otherwise. The namespace, and with it the tables, is deleted in `finally`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from unistack.dataplane import secgroups
from unistack.dataplane.nftables import NftCommand
from unistack.dataplane.secgroups import AddressPair, PortFilter, SecurityRule

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
        reason="needs root, nft and ip",
    ),
]


def ports(count: int) -> list[PortFilter]:
    """`count` ports in one default group, with every kind of rule."""
    members = tuple(f"10.60.{i // 250}.{i % 250 + 1}" for i in range(count))
    rules = (
        SecurityRule("egress"),
        SecurityRule("egress", ethertype="IPv6"),
        SecurityRule("ingress", remote_group_id="default", remote_ips=members),
        SecurityRule(
            "ingress", ethertype="IPv6", remote_group_id="default", remote_ips=("fd00::1",)
        ),
        SecurityRule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        SecurityRule("ingress", protocol="udp", port_range_min=5000, port_range_max=5100),
        SecurityRule("ingress", protocol="icmp", port_range_min=8, port_range_max=0),
        SecurityRule("ingress", ethertype="IPv6", protocol="icmp", port_range_min=128),
        SecurityRule("ingress", protocol="gre", remote_ip_prefix="192.0.2.0/24"),
        SecurityRule("egress", protocol="sctp", remote_ip_prefix="198.51.100.7/32"),
    )
    return [
        PortFilter(
            device=f"unistackp{i:06x}",
            mac=f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
            fixed_ips=(members[i], f"fd00::{i + 10:x}"),
            allowed_address_pairs=(
                AddressPair("10.61.0.0/24"),
                AddressPair("10.62.0.9", "fa:16:3e:ff:00:01"),
            ),
            port_security_enabled=i % 10 != 9,
            rules=rules,
        )
        for i in range(count)
    ]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"unistack-t{secrets.token_hex(3)}-nft"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


async def test_the_kernel_accepts_every_rule_shape(netns: str) -> None:
    driver = NftCommand(netns=netns)
    await driver.check(secgroups.render_conntrack_table() + secgroups.render_table(ports(5)))
    await driver.check(secgroups.render_table([]))


async def test_a_hundred_ports_load_atomically_and_quickly(netns: str) -> None:
    driver = NftCommand(netns=netns)
    firewall = secgroups.SecurityGroupFirewall(driver)
    hundred = ports(100)
    await firewall.apply(hundred)
    started = time.perf_counter()
    await firewall.apply(hundred)
    elapsed = time.perf_counter() - started
    assert sorted(await driver.list_tables("unistack-sg")) == [
        ("bridge", "unistack-sg"),
        ("inet", "unistack-sg-ct"),
    ]
    listing = await driver.run("list", "map", "bridge", "unistack-sg", "egress-ports")
    assert listing.count("jump egress-unistackp") == 90  # every tenth port has no port security
    assert elapsed < 5, f"100 ports took {elapsed:.2f} s"
    await firewall.remove()
    assert await driver.list_tables("unistack") == []
