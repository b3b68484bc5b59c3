"""`ClusterDns` against the real API server in-process, queried over real UDP and TCP sockets.

The server listens on a free loopback port; queries are made with dnslib's blocking
`DNSRecord.send` in a thread (the server runs on the test's event loop). A fake upstream
resolver, started by the test, stands for the host's resolvers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from tests.integration.harness import eventually
from unistack.client.api import Client
from unistack.client.resources import ENDPOINTSLICES, SERVICES
from unistack.kube.dns import ClusterDns, DnsSettings

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(30)


def service(name: str, cluster_ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def headless_slice() -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "db-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "db"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.1.0.1"], "hostname": "db-0", "conditions": {"ready": True}},
            {"addresses": ["10.1.0.2"], "conditions": {"ready": False}},
        ],
    }


async def query(port: int, name: str, rtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    """Ask as a stub resolver does: up to three attempts of 3 s each (resolv.conf's
    `attempts`), since a loaded machine can stall the server's loop past one timeout."""
    question = DNSRecord.question(name, rtype)
    for attempt in range(3):
        try:
            raw = await asyncio.to_thread(question.send, "127.0.0.1", port, tcp=tcp, timeout=3)
        except TimeoutError:
            if attempt == 2:
                raise
            continue
        return DNSRecord.parse(raw)
    raise AssertionError("unreachable")


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


class FakeUpstream(asyncio.DatagramProtocol):
    """Answers every A question with 192.0.2.1 (or stays silent when `silent`)."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.silent or self.transport is None:
            return
        request = DNSRecord.parse(data)
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
        self.transport.sendto(reply.pack(), addr)


@contextlib.asynccontextmanager
async def upstream(silent: bool = False) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: FakeUpstream(silent), local_addr=("127.0.0.1", 0)
    )
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def dns_server(client: Client, **settings: Any) -> AsyncIterator[ClusterDns]:
    options = {"host": "127.0.0.1", "port": 0, "upstreams": (), **settings}
    dns = ClusterDns(client, DnsSettings(**options))
    task = asyncio.create_task(dns.run())
    try:
        started = asyncio.ensure_future(dns.started.wait())
        await asyncio.wait([started, task], timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: say why
        assert dns.started.is_set(), "the DNS server did not start in 5 s"
        yield dns
    finally:
        started.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_services_and_headless_endpoints_over_udp_and_tcp(client: Client) -> None:
    await client.create(SERVICES, service("web", "10.96.0.20"))
    await client.create(SERVICES, service("db", "None"))
    await client.create(ENDPOINTSLICES, headless_slice())
    async with dns_server(client) as dns:
        for tcp in (False, True):
            reply = await query(dns.port, "web.default.svc.cluster.local", tcp=tcp)
            assert addresses(reply) == ["10.96.0.20"] and reply.header.aa
        assert addresses(await query(dns.port, "WeB.DeFault.svc.Cluster.Local")) == ["10.96.0.20"]
        assert addresses(await query(dns.port, "db.default.svc.cluster.local")) == ["10.1.0.1"]
        assert addresses(await query(dns.port, "db-0.db.default.svc.cluster.local")) == ["10.1.0.1"]
        srv = await query(dns.port, "_http._tcp.web.default.svc.cluster.local", "SRV")
        assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [
            (80, "web.default.svc.cluster.local.")
        ]
        ptr = await query(dns.port, "20.0.96.10.in-addr.arpa", "PTR")
        assert [str(rr.rdata) for rr in ptr.rr] == ["web.default.svc.cluster.local."]
        missing = await query(dns.port, "nope.default.svc.cluster.local", tcp=True)
        assert missing.header.rcode == RCODE.NXDOMAIN
        assert [rr.rtype for rr in missing.auth] == [QTYPE.SOA]


async def test_a_new_service_appears(client: Client) -> None:
    async with dns_server(client) as dns:
        name = "late.default.svc.cluster.local"
        assert (await query(dns.port, name)).header.rcode == RCODE.NXDOMAIN
        await client.create(SERVICES, service("late", "10.96.0.77"))

        async def answered() -> bool:
            return addresses(await query(dns.port, name)) == ["10.96.0.77"]

        await eventually(answered, timeout=5)


async def test_other_names_are_forwarded_refused_or_servfail(client: Client) -> None:
    async with dns_server(client) as dns:
        refused = await query(dns.port, "example.com")
        assert refused.header.rcode == RCODE.REFUSED
    async with upstream() as good, dns_server(client, upstreams=(good,)) as dns:
        for tcp in (False, True):
            forwarded = await query(dns.port, "Example.COM", tcp=tcp)
            assert addresses(forwarded) == ["192.0.2.1"]
    async with (
        upstream(silent=True) as dead,
        upstream() as good,
        dns_server(client, upstreams=(dead, good), upstream_timeout=0.2) as dns,
    ):
        assert addresses(await query(dns.port, "example.com")) == ["192.0.2.1"]
    async with (
        upstream(silent=True) as dead,
        dns_server(client, upstreams=(dead,), upstream_timeout=0.2) as dns,
    ):
        assert (await query(dns.port, "example.com")).header.rcode == RCODE.SERVFAIL


async def test_the_server_publishes_the_kube_dns_service(client: Client) -> None:
    async with dns_server(client, advertise_address="127.0.0.1", publish_interval=0.1) as dns:

        async def published() -> bool:
            slices = await client.list(
                ENDPOINTSLICES, "kube-system", label_selector="kubernetes.io/service-name=kube-dns"
            )
            return len(slices["items"]) == 1

        await eventually(published, timeout=5)
        kube_dns = await client.get(SERVICES, "kube-dns", "kube-system")
        assert kube_dns["spec"]["clusterIP"] == "10.96.0.10"
        assert kube_dns["spec"].get("selector") is None
        endpoint_slice = await client.get(ENDPOINTSLICES, "kube-dns-unistack", "kube-system")
        assert endpoint_slice["endpoints"][0]["addresses"] == ["127.0.0.1"]
        assert {(p["name"], p["port"], p["protocol"]) for p in endpoint_slice["ports"]} == {
            ("dns", dns.port, "UDP"),
            ("dns-tcp", dns.port, "TCP"),
        }
        name = "kube-dns.kube-system.svc.cluster.local"

        async def answered() -> bool:
            return addresses(await query(dns.port, name)) == ["10.96.0.10"]

        await eventually(answered, timeout=5)


async def test_port_zero_finds_a_port_free_for_udp_and_tcp(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port the kernel gives UDP may be taken for TCP: the server tries another rather
    than stop (it used to die after saying its port, and queries went unanswered)."""
    real_start_server = asyncio.start_server
    refused: list[int] = []

    async def taken_once(*args: Any, **kwargs: Any) -> asyncio.Server:
        if not refused:
            refused.append(args[2])
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return await real_start_server(*args, **kwargs)

    monkeypatch.setattr(asyncio, "start_server", taken_once)
    async with dns_server(client) as dns:
        assert refused and dns.port != 0
        for tcp in (False, True):
            assert (await query(dns.port, "example.com", tcp=tcp)).header.rcode == RCODE.REFUSED
