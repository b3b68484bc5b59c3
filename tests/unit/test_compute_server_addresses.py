"""How a server's floating IPs join its recorded addresses (`server_addresses`), without I/O,
and the one Networking call a page of servers costs."""

from __future__ import annotations

import copy
from typing import Any

from unistack.iaas.compute.ports import Networking
from unistack.openstack.compute.server_addresses import (
    ServerAddresses,
    by_port,
    floating_of,
    shown_server,
    with_floating,
)

Obj = dict[str, Any]
MAC_A, MAC_B = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"


def fixed(address: str, mac: str) -> Obj:
    return {
        "version": 4,
        "addr": address,
        "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": mac,
    }


def server(name: str, ports: list[str], project: str = "p1", **addresses: list[Obj]) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {"project_id": project},
        "status": {"ports": ports, "addresses": addresses},
    }


def fip(port: str | None, fixed_address: str | None, address: str) -> Obj:
    return {"port_id": port, "fixed_ip_address": fixed_address, "floating_ip_address": address}


def test_a_floating_ip_follows_the_fixed_entries_of_its_network_with_their_mac() -> None:
    addresses = {"blue": [fixed("10.0.0.5", MAC_A)], "green": [fixed("10.1.0.7", MAC_B)]}
    shown = with_floating(addresses, (("10.1.0.7", "172.24.4.9"),))
    assert shown["blue"] == addresses["blue"]
    assert shown["green"] == [
        fixed("10.1.0.7", MAC_B),
        {
            "version": 4,
            "addr": "172.24.4.9",
            "OS-EXT-IPS:type": "floating",
            "OS-EXT-IPS-MAC:mac_addr": MAC_B,
        },
    ]


def test_floating_ips_come_after_every_fixed_one_and_unknown_fixed_ones_are_left_out() -> None:
    addresses = {"blue": [fixed("10.0.0.5", MAC_A), fixed("10.0.0.6", MAC_A)]}
    floating = (("10.0.0.5", "172.24.4.2"), ("10.0.0.9", "172.24.4.3"))
    shown = with_floating(addresses, floating)
    assert [(a["addr"], a["OS-EXT-IPS:type"]) for a in shown["blue"]] == [
        ("10.0.0.5", "fixed"),
        ("10.0.0.6", "fixed"),
        ("172.24.4.2", "floating"),
    ]


def test_only_the_servers_own_ports_count_and_the_result_is_a_stable_key() -> None:
    ports = by_port(
        [
            fip("port-b", "10.0.0.6", "172.24.4.4"),
            fip("port-a", "10.0.0.5", "172.24.4.3"),
            fip(None, None, "172.24.4.5"),
            fip("port-z", "10.0.0.9", "172.24.4.6"),
        ]
    )
    mine = server("s1", ["port-a", "port-b"])
    assert floating_of(mine, ports) == (("10.0.0.5", "172.24.4.3"), ("10.0.0.6", "172.24.4.4"))
    assert floating_of(server("s2", []), ports) == ()


def test_the_cached_server_is_never_changed() -> None:
    cached = server("s1", ["port-a"], blue=[fixed("10.0.0.5", MAC_A)])
    kept = copy.deepcopy(cached)
    shown = shown_server(cached, (("10.0.0.5", "172.24.4.3"),))
    assert cached == kept
    assert len(shown["status"]["addresses"]["blue"]) == 2
    assert shown_server(cached, ()) is cached


class FakeNeutron:
    """The Networking API's floating IP list, recording what it was asked."""

    def __init__(self, fips: list[Obj], status: int = 200) -> None:
        self.fips, self.status = fips, status
        self.asked: list[tuple[str, str, dict[str, str] | None]] = []

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        self.asked.append((method, path, params))
        return self.status, {"floatingips": self.fips}


async def test_a_page_of_servers_costs_one_call_narrowed_to_their_project() -> None:
    neutron = FakeNeutron([fip("port-a", "10.0.0.5", "172.24.4.3")])
    addresses = ServerAddresses(Networking(neutron))
    servers = [server("s1", ["port-a"]), server("s2", ["port-b"]), server("s3", [])]
    floating = await addresses.of_servers(servers)
    assert floating == {"s1": (("10.0.0.5", "172.24.4.3"),), "s2": (), "s3": ()}
    params = {"status": "ACTIVE", "project_id": "p1"}
    assert neutron.asked == [("GET", "/network/v2.0/floatingips", params)]


async def test_one_port_is_asked_by_port_and_no_port_asks_nothing() -> None:
    neutron = FakeNeutron([])
    addresses = ServerAddresses(Networking(neutron))
    await addresses.of_servers([server("s1", ["port-a"]), server("s2", [], project="p2")])
    assert neutron.asked == [("GET", "/network/v2.0/floatingips", {"port_id": "port-a"})]
    await addresses.of_servers([server("s3", [])])
    assert len(neutron.asked) == 1


async def test_servers_of_several_projects_and_a_networking_error() -> None:
    neutron = FakeNeutron([fip("port-a", "10.0.0.5", "172.24.4.3")], status=503)
    addresses = ServerAddresses(Networking(neutron))
    mixed = [server("s1", ["port-a"]), server("s2", ["port-b"], project="p2")]
    assert await addresses.of_servers(mixed) == {"s1": (), "s2": ()}
    assert neutron.asked[0][2] == {"status": "ACTIVE"}
