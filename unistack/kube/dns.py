"""Cluster DNS: an authoritative server for the cluster domain, over UDP and TCP with asyncio.

`ClusterDns` keeps informers on Services and EndpointSlices (all namespaces); any change marks
its `Zone` stale, and the next query rebuilds it with the pure `unistack.kube.dnsrecords`.
Questions about the cluster domain (and the reverse names of ClusterIPs) are answered from the
zone with TTL `settings.ttl`; every other question is forwarded to the upstream resolvers
(`settings.upstreams`, else the non-loopback nameservers of the host's resolv.conf) over UDP,
one after the other with a timeout, and answered SERVFAIL when none answers, or REFUSED when
there is no upstream. UDP answers larger than the client's buffer are truncated (TC) so that it
retries over TCP.

With `settings.advertise_address` the server also publishes itself: it keeps the Service
`kube-system/kube-dns` (ClusterIP `settings.service_ip`, no selector, ports `dns` 53/UDP and
`dns-tcp` 53/TCP) and an EndpointSlice `kube-dns-unistack` pointing at address:port, so that
pods reach it at 10.96.0.10:53 through the service proxy (`unistack.agent.proxy`). Run as pods
of the self-hosted control plane, the replicas publish nothing: the control-plane operator
keeps that slice listing the Ready ones (`controlplane.render.dns_endpoint_slice`), and a
replica told to stop answers on for `settings.drain_seconds` while the proxies drop it.
`run_dns(client, settings)` runs it all until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import struct
from dataclasses import dataclass
from typing import Any, cast

from dnslib import CNAME, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSRecord

from unistack.client import kubeconfig
from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import ENDPOINTSLICES, SERVICES
from unistack.kube import dnsrecords
from unistack.runtime import process
from unistack.runtime.informer import Informer

Obj = dict[str, Any]
SLICE_NAME = "kube-dns-unistack"
MANAGED_BY = "unistack-dns"
UDP_PAYLOAD = 512

log = logging.getLogger(__name__)
PORT_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """Where the server listens and what it answers.

    `port` 0 picks a free port, the same for UDP and TCP (tests). `upstreams` are `ip` or
    `ip:port`; None means the host's resolv.conf, an empty tuple means none (REFUSED).
    """

    domain: str = "cluster.local"
    host: str = "0.0.0.0"
    port: int = 53
    ttl: int = 5
    upstreams: tuple[str, ...] | None = None
    upstream_timeout: float = 2.0
    resolv_conf: str = "/etc/resolv.conf"
    advertise_address: str | None = None
    service_ip: str = "10.96.0.10"
    drain_seconds: float = 0.0  # answering on after being told to stop
    publish_interval: float = 30.0


# --- decisions (pure) -------------------------------------------------------------------------


def nameservers_from_resolv_conf(text: str) -> tuple[str, ...]:
    """The non-loopback `nameserver` addresses of a resolv.conf."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            with contextlib.suppress(ValueError):
                if not ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                    found.append(fields[1])
    return tuple(found)


def parse_upstream(upstream: str) -> tuple[str, int]:
    """`ip` or `ip:port` (IPv4) or `[ip6]:port` → (host, port)."""
    if upstream.startswith("["):
        host, _, port = upstream[1:].partition("]:")
        return host, int(port or 53)
    if upstream.count(":") == 1:
        host, port = upstream.split(":")
        return host, int(port)
    return upstream, 53


def _rdata(record: dnsrecords.Record) -> Any:
    value = record.value
    if isinstance(value, dnsrecords.Srv):
        return SRV(value.priority, value.weight, value.port, value.target + ".")
    return {"A": A, "CNAME": CNAME, "PTR": PTR}[record.rtype](
        value if record.rtype == "A" else value + "."
    )


def soa_record(domain: str, ttl: int) -> RR:
    soa = SOA(f"ns.dns.{domain}.", f"hostmaster.{domain}.", (1, 7200, 1800, 86400, ttl))
    return RR(domain + ".", QTYPE.SOA, rdata=soa, ttl=ttl)


def zone_reply(request: DNSRecord, zone: dnsrecords.Zone, ttl: int) -> DNSRecord:
    """The authoritative answer to a question `dnsrecords.answers_for` says is ours."""
    qname, qtype = request.q.qname, QTYPE.get(request.q.qtype)
    reply = request.reply()
    if dnsrecords.normalise(str(qname)) == zone.domain and qtype in ("SOA", "ANY"):
        reply.add_answer(soa_record(zone.domain, ttl))
        return reply
    found = dnsrecords.lookup(zone, str(qname), str(qtype))
    for record in found.answers:
        reply.add_answer(RR(qname, getattr(QTYPE, record.rtype), rdata=_rdata(record), ttl=ttl))
    for record in found.additional:
        rr = RR(record.name + ".", QTYPE.A, rdata=_rdata(record), ttl=ttl)
        reply.add_ar(rr)
    if found.rcode == "NXDOMAIN":
        reply.header.rcode = RCODE.NXDOMAIN
    if not found.answers:
        reply.add_auth(soa_record(zone.domain, ttl))
    return reply


def error_reply(request: DNSRecord, rcode: int) -> bytes:
    reply = request.reply(aa=0)
    reply.header.rcode = rcode
    return bytes(reply.pack())


def udp_limit(request: DNSRecord) -> int:
    """The largest UDP answer the client takes: 512, or its EDNS buffer size."""
    sizes = [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT]
    return max([UDP_PAYLOAD, *sizes])


def truncated(request: DNSRecord, reply: bytes) -> bytes:
    """An empty answer with TC set, for answers too large for UDP."""
    short = request.reply(aa=1)
    short.header.rcode = DNSRecord.parse(reply).header.rcode
    short.header.tc = 1
    return bytes(short.pack())


def dns_service(settings: DnsSettings, port: int) -> Obj:
    """The `kube-system/kube-dns` Service: no selector, fed by the slice below."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {"clusterIP": settings.service_ip, "ports": ports},
    }


def dns_endpoint_slice(address: str, port: int) -> Obj:
    """The EndpointSlice saying where this server listens."""
    labels = {
        "kubernetes.io/service-name": "kube-dns",
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": SLICE_NAME, "namespace": "kube-system", "labels": labels},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
    }


# --- I/O: forwarding, publishing, the server --------------------------------------------------


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        same_id = len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.query_id
        if same_id and not self.answer.done():
            self.answer.set_result(data)


async def ask_upstream(data: bytes, upstream: tuple[str, int], timeout: float) -> bytes:
    """One UDP exchange with an upstream resolver; TimeoutError or OSError when it fails."""
    loop = asyncio.get_running_loop()
    query_id = struct.unpack("!H", data[:2])[0]
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _UpstreamProtocol(query_id), remote_addr=upstream
    )
    try:
        transport.sendto(data)
        async with asyncio.timeout(timeout):
            return await protocol.answer
    finally:
        transport.close()


async def publish(client: Client, settings: DnsSettings, address: str, port: int) -> None:
    """Create the kube-dns Service if missing; create or correct this server's slice."""
    try:
        await client.get(SERVICES, "kube-dns", "kube-system")
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            await client.create(SERVICES, dns_service(settings, port))
    desired = dns_endpoint_slice(address, port)
    try:
        current = await client.get(ENDPOINTSLICES, SLICE_NAME, "kube-system")
    except NotFound:
        await client.create(ENDPOINTSLICES, desired)
        return
    fields = ("endpoints", "ports")
    if any(current.get(f) != desired[f] for f in fields) or (
        current["metadata"].get("labels") != desired["metadata"]["labels"]
    ):
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await client.update(ENDPOINTSLICES, desired)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, dns: ClusterDns) -> None:
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.dns.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Any) -> None:
        reply = await self.dns.answer(data, udp=True)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class ClusterDns:
    """The DNS server; `start()` binds (then `port` is known), `run()` serves until cancelled."""

    def __init__(self, client: Client, settings: DnsSettings | None = None) -> None:
        self.client = client
        self.settings = settings or DnsSettings()
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self.port = self.settings.port
        self.upstreams = [parse_upstream(u) for u in self._upstream_names()]
        self._zone: dnsrecords.Zone | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.started = asyncio.Event()  # both sockets bound; `port` is the one they share
        for informer in (self.services, self.slices):
            informer.add_handlers(
                on_add=self._invalidate,
                on_update=lambda old, new: self._invalidate(new),
                on_delete=self._invalidate,
            )

    def _upstream_names(self) -> tuple[str, ...]:
        if self.settings.upstreams is not None:
            return self.settings.upstreams
        try:
            with open(self.settings.resolv_conf) as resolv_conf:
                return nameservers_from_resolv_conf(resolv_conf.read())
        except OSError:
            return ()

    def _invalidate(self, _obj: Obj) -> None:
        self._zone = None

    @property
    def zone(self) -> dnsrecords.Zone:
        """The records as the caches stand, rebuilt after any change."""
        if self._zone is None:
            self._zone = dnsrecords.build_zone(
                self.services.cache.list(), self.slices.cache.list(), self.settings.domain
            )
        return self._zone

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, data: bytes, *, udp: bool) -> bytes | None:
        """The reply to one query message; None for messages that are not queries."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        if request.header.qr or not request.questions:
            return None
        try:
            reply = await self.reply_to(request, data)
        except Exception:
            log.exception("dns: answering %s failed", request.q.qname)
            reply = error_reply(request, RCODE.SERVFAIL)
        if udp and len(reply) > udp_limit(request):
            return truncated(request, reply)
        return reply

    async def reply_to(self, request: DNSRecord, data: bytes) -> bytes:
        """From the zone when the name is ours, else from upstream."""
        if dnsrecords.answers_for(self.zone, str(request.q.qname)):
            return bytes(zone_reply(request, self.zone, self.settings.ttl).pack())
        return await self.forward(request, data)

    async def forward(self, request: DNSRecord, data: bytes) -> bytes:
        """The first upstream's answer; REFUSED without upstreams, SERVFAIL when all fail."""
        if not self.upstreams:
            return error_reply(request, RCODE.REFUSED)
        for upstream in self.upstreams:
            try:
                return await ask_upstream(data, upstream, self.settings.upstream_timeout)
            except (TimeoutError, OSError) as exc:
                log.info("dns: upstream %s:%d failed: %r", *upstream, exc)
        return error_reply(request, RCODE.SERVFAIL)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(10):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                reply = await self.answer(data, udp=False)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        """Sync the informers, then bind UDP and TCP on the same port (with port 0, one that
        is free for both)."""
        for informer in (self.services, self.slices):
            self.spawn(informer.run())
        await self.services.wait_synced()
        await self.slices.wait_synced()
        loop = asyncio.get_running_loop()
        for attempt in range(PORT_ATTEMPTS):
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(self.settings.host, self.settings.port)
            )
            port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.settings.host, port)
            except OSError as exc:
                # Port 0 gave a port free for UDP that TCP has taken: try another.
                self._udp.close()
                if self.settings.port != 0 or exc.errno != errno.EADDRINUSE:
                    raise
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            self.port = port
            self.started.set()
            return

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self) -> None:
        """Start, then publish (when advertising) every `publish_interval` until cancelled."""
        try:
            await self.start()
            address = self.settings.advertise_address
            while True:
                if address:
                    try:
                        await publish(self.client, self.settings, address, self.port)
                    except Exception:
                        log.exception("dns: publishing kube-dns failed")
                await asyncio.sleep(self.settings.publish_interval if address else 3600)
        finally:
            await asyncio.sleep(self.settings.drain_seconds)
            await self.stop()


async def run_dns(client: Client, settings: DnsSettings | None = None) -> None:
    """Serve cluster DNS until cancelled."""
    await ClusterDns(client, settings).run()


def serve(kubeconfig_path: str, settings: DnsSettings) -> None:
    """`unistack serve dns`: serve until SIGTERM or SIGINT (blocking)."""
    process.configure_logging()
    asyncio.run(_serve(kubeconfig_path, settings))


async def _serve(kubeconfig_path: str, settings: DnsSettings) -> None:
    client = Client(kubeconfig.load_transport(kubeconfig_path))
    try:
        await process.run_until_signalled(run_dns(client, settings))
    finally:
        await client.close()
