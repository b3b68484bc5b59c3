"""The L3 agent's decisions without I/O: which host runs a router, its wiring, its bindings."""

from __future__ import annotations

from typing import Any

from unistack.agent import l3
from unistack.dataplane.routers import FloatingIp, RouterPort

Obj = dict[str, Any]
ROUTER, NET, EXT = "r0000000-0000-4000-8000-000000000001", "n-tenant", "n-public"
SUBNET, EXT_SUBNET = "s-tenant", "s-public"


def obj(name: str, spec: Obj, **meta: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": "p", **meta}, "spec": spec}


def node(name: str, drivers: str) -> Obj:
    return {"metadata": {"name": name, "annotations": {l3.DRIVERS_ANNOTATION: drivers}}}


def port(name: str, owner: str, network: str, subnet: str, ip: str, host: str = "") -> Obj:
    return obj(
        name,
        {
            "device_owner": owner,
            "device_id": ROUTER,
            "network_id": network,
            "mac_address": f"fa:16:3e:00:00:{name[-2:]}",
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}],
            "binding:host_id": host,
        },
    )


NETWORKS = [obj(NET, {"mtu": 1450}), obj(EXT, {"mtu": 1500, "router:external": True})]
SUBNETS = [
    obj(SUBNET, {"network_id": NET, "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"}),
    obj(EXT_SUBNET, {"network_id": EXT, "cidr": "172.24.10.0/24", "gateway_ip": "172.24.10.1"}),
]
PORTS = [
    port("pi-01", l3.INTERFACE, NET, SUBNET, "10.0.0.1"),
    port("pg-02", l3.GATEWAY, EXT, EXT_SUBNET, "172.24.10.7", host="other"),
]
ROUTER_OBJ = obj(
    ROUTER,
    {
        "external_gateway_info": {"network_id": EXT, "enable_snat": True},
        "routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.9"}],
    },
)
FIPS = [
    obj(
        "f1",
        {
            "router_id": ROUTER,
            "port_id": "vm-port",
            "fixed_ip_address": "10.0.0.5",
            "floating_ip_address": "172.24.10.50",
        },
    ),
    obj("f2", {"router_id": ROUTER, "port_id": None, "floating_ip_address": "172.24.10.51"}),
]


def test_one_host_runs_every_router() -> None:
    assert l3.l3_hosts("me", []) == ["me"]
    wanted = l3.wanted_routers("me", [ROUTER_OBJ], PORTS, NETWORKS, SUBNETS, FIPS, [])
    assert list(wanted) == [ROUTER]


def test_hosts_share_routers_deterministically() -> None:
    nodes = [node("a", "container"), node("b", "container,qemu"), node("c", "")]
    hosts = l3.l3_hosts("a", nodes)
    assert hosts == ["a", "b"]  # c runs no instances
    ids = [f"router-{n}" for n in range(200)]
    chosen = {router_id: l3.router_host(router_id, hosts) for router_id in ids}
    assert set(chosen.values()) == {"a", "b"}
    assert chosen == {router_id: l3.router_host(router_id, ["b", "a"]) for router_id in ids}
    # a host leaving moves only its own routers
    after = {router_id: l3.router_host(router_id, ["a"]) for router_id in ids}
    assert all(after[r] == "a" for r, host in chosen.items() if host == "a")
    routers = [obj(router_id, {}) for router_id in ids]
    mine = l3.wanted_routers("a", routers, [], [], [], [], nodes)
    assert set(mine) == {r for r, host in chosen.items() if host == "a"}


def test_router_wiring_from_objects() -> None:
    wiring = l3.wanted_routers("me", [ROUTER_OBJ], PORTS, NETWORKS, SUBNETS, FIPS, [])[ROUTER]
    assert wiring.interfaces == (RouterPort("pi-01", NET, "fa:16:3e:00:00:01", ("10.0.0.1/24",)),)
    assert wiring.gateway == RouterPort(
        "pg-02", EXT, "fa:16:3e:00:00:02", ("172.24.10.7/24",), 1500
    )
    assert wiring.gateway_ip == "172.24.10.1"
    assert wiring.routes == (("10.9.0.0/16", "10.0.0.9"),)
    assert wiring.floating_ips == (FloatingIp("172.24.10.50", "10.0.0.5"),)
    assert wiring.snat


def test_router_without_gateway_has_no_nat() -> None:
    router = obj(ROUTER, {"external_gateway_info": None})
    ports = PORTS[:1]
    wiring = l3.wanted_routers("me", [router], ports, NETWORKS, SUBNETS, FIPS, [])[ROUTER]
    assert wiring.gateway is None and wiring.floating_ips == ()
    assert l3.gateway_networks({ROUTER: wiring}, [router], ports) == set()


def test_deleted_routers_are_not_wanted() -> None:
    router = obj(ROUTER, {}, deletionTimestamp="2026-01-01T00:00:00Z")
    assert l3.wanted_routers("me", [router], PORTS, NETWORKS, SUBNETS, FIPS, []) == {}


def test_router_ports_are_bound_to_the_routers_host() -> None:
    wanted = l3.wanted_routers("me", [ROUTER_OBJ], PORTS, NETWORKS, SUBNETS, FIPS, [])
    assert [p["metadata"]["name"] for p in l3.ports_to_bind("me", wanted, PORTS)] == [
        "pi-01",
        "pg-02",
    ]
    assert l3.ports_to_bind("me", {}, PORTS) == []


def test_external_network_gets_the_subnet_gateway_on_the_host() -> None:
    wanted = l3.wanted_routers("me", [ROUTER_OBJ], PORTS, NETWORKS, SUBNETS, FIPS, [])
    externals = l3.wanted_externals(l3.gateway_networks(wanted, [], []), SUBNETS)
    assert list(externals) == [EXT]
    assert externals[EXT].gateway == "172.24.10.1/24"
    assert externals[EXT].cidr == "172.24.10.0/24"
    assert l3.networks_of(wanted[ROUTER]) == {NET: 1450, EXT: 1500}


def test_the_uplink_serves_the_external_networks_of_routers_on_any_host() -> None:
    # no router here, but another host's router has its gateway port bound there
    assert l3.gateway_networks({}, [ROUTER_OBJ], PORTS) == {EXT}
    unbound = port("pg-03", l3.GATEWAY, EXT, EXT_SUBNET, "172.24.10.8")
    assert l3.gateway_networks({}, [ROUTER_OBJ], [PORTS[0], unbound]) == set()
    gone = obj(ROUTER, ROUTER_OBJ["spec"], deletionTimestamp="2026-01-01T00:00:00Z")
    assert l3.gateway_networks({}, [gone], PORTS) == set()
    assert l3.gateway_networks({}, [], PORTS) == set()  # a port left by a deleted router
    v6 = obj("s-v6", {"network_id": EXT, "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::1"})
    v6["spec"]["ip_version"] = 6
    externals = l3.wanted_externals({EXT}, [*SUBNETS, v6])
    assert [(w.network_id, w.gateway) for w in externals.values()] == [(EXT, "172.24.10.1/24")]


def test_cleanup_removes_only_recorded_routers(tmp_path: Any) -> None:
    from unistack.dataplane.routers import FakeRouters, RouterWiring

    record = tmp_path / "routers.json"
    record.write_text('{"routers": ["mine"], "externals": ["ext"]}')
    fake = FakeRouters()
    fake.ensure_router(RouterWiring("mine"))
    fake.ensure_router(RouterWiring("theirs"))
    done = l3.cleanup(record, fake)
    assert fake.list_routers() == ["theirs"]
    assert ("remove_external", "ext") in fake.calls
    assert done and not record.exists()


def test_an_interface_advertises_its_ipv6_subnets_with_an_ra_mode() -> None:
    subnets = {
        SUBNET: SUBNETS[0],
        "s-slaac": obj("s-slaac", {"cidr": "fd00:1::/64", "ipv6_ra_mode": "slaac"}),
        "s-plain": obj("s-plain", {"cidr": "fd00:2::/64", "ipv6_ra_mode": None}),
    }
    dual = port("pi-03", l3.INTERFACE, NET, SUBNET, "10.0.0.1")
    dual["spec"]["fixed_ips"] += [
        {"subnet_id": "s-slaac", "ip_address": "fd00:1::1"},
        {"subnet_id": "s-plain", "ip_address": "fd00:2::1"},
    ]
    wired = l3.router_port(dual, {NET: NETWORKS[0]}, subnets)
    assert wired.addresses == ("10.0.0.1/24", "fd00:1::1/64", "fd00:2::1/64")
    assert wired.advertise == (("fd00:1::/64", "slaac"),)  # no RA mode: not advertised
