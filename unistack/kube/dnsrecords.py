"""Cluster DNS records from Services and EndpointSlices: the pure half of `unistack.kube.dns`.

`build_zone(services, endpoint_slices, domain)` makes a `Zone` holding what the Kubernetes DNS
specification asks for: `<svc>.<ns>.svc.<domain>` A (the ClusterIP, or for a headless Service
the ready endpoint addresses) or CNAME (ExternalName); `<hostname>.<svc>.<ns>.svc.<domain>` for
endpoints with a hostname and `<a-b-c-d>.<svc>...` for the other endpoints of headless Services;
SRV `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for named ports; PTR for ClusterIPs. `lookup`
answers one question from a zone: records, NXDOMAIN or NODATA (both with the SOA), and pod
names `a-b-c-d.<ns>.pod.<domain>` are answered from the name itself, as CoreDNS's `pods
insecure` does. Names are compared lower-cased. `answers_for` says whether a name is this
server's to answer at all (else it is forwarded upstream).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: `value` is an address (A), a name (CNAME, PTR) or an `Srv`."""

    name: str
    rtype: str  # A, CNAME, SRV, PTR
    value: str | Srv


@dataclass(slots=True)
class Zone:
    """Records by lower-case name (no trailing dot); `names` also holds empty non-terminals."""

    domain: str
    records: dict[str, list[Record]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    reverse: dict[str, list[Record]] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.records.setdefault(record.name, []).append(record)
        labels = record.name.split(".")
        for n in range(len(labels)):
            self.names.add(".".join(labels[n:]))


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer to one question: `rcode` NOERROR or NXDOMAIN, and the records to send."""

    rcode: str
    answers: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    authoritative: bool = True


def normalise(name: str) -> str:
    return name.rstrip(".").lower()


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def dashed(ip: str) -> str:
    return ip.replace(".", "-")


def _condition(endpoint: Obj, name: str) -> bool:
    value = (endpoint.get("conditions") or {}).get(name)
    return True if value is None else bool(value)


def ready_endpoints(endpoint_slices: Iterable[Obj]) -> list[Obj]:
    """The ready IPv4 endpoints of the slices (ready unset counts as ready)."""
    return [
        endpoint
        for endpoint_slice in endpoint_slices
        if endpoint_slice.get("addressType", "IPv4") == "IPv4"
        for endpoint in endpoint_slice.get("endpoints") or []
        if _condition(endpoint, "ready") and endpoint.get("addresses")
    ]


def _slices_by_service(endpoint_slices: Iterable[Obj]) -> dict[tuple[str, str], list[Obj]]:
    grouped: dict[tuple[str, str], list[Obj]] = {}
    for endpoint_slice in endpoint_slices:
        meta = endpoint_slice.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            key = (meta.get("namespace") or "default", service)
            grouped.setdefault(key, []).append(endpoint_slice)
    return grouped


def _endpoint_name(endpoint: Obj, service_name: str) -> str:
    label = endpoint.get("hostname") or dashed(endpoint["addresses"][0])
    return f"{label}.{service_name}".lower()


def _add_headless(zone: Zone, service_name: str, slices: list[Obj]) -> None:
    for endpoint in ready_endpoints(slices):
        address = endpoint["addresses"][0]
        zone.add(Record(service_name, "A", address))
        zone.add(Record(_endpoint_name(endpoint, service_name), "A", address))
    for endpoint_slice in slices:
        for port in endpoint_slice.get("ports") or []:
            if not port.get("name"):
                continue
            srv_name = f"_{port['name']}._{(port.get('protocol') or 'TCP')}.{service_name}"
            for endpoint in ready_endpoints([endpoint_slice]):
                target = _endpoint_name(endpoint, service_name)
                zone.add(Record(srv_name.lower(), "SRV", Srv(0, 100, int(port["port"]), target)))


def _add_cluster_ip(zone: Zone, service: Obj, service_name: str) -> None:
    spec = service["spec"]
    zone.add(Record(service_name, "A", spec["clusterIP"]))
    zone.reverse.setdefault(reverse_name(spec["clusterIP"]), []).append(
        Record(reverse_name(spec["clusterIP"]), "PTR", service_name)
    )
    for port in spec.get("ports") or []:
        if port.get("name"):
            srv_name = f"_{port['name']}._{port.get('protocol') or 'TCP'}.{service_name}".lower()
            zone.add(Record(srv_name, "SRV", Srv(0, 100, int(port["port"]), service_name)))


def add_service(zone: Zone, service: Obj, slices: list[Obj]) -> None:
    """The records of one Service."""
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    service_name = f"{meta['name']}.{namespace}.svc.{zone.domain}".lower()
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" and spec.get("externalName"):
        zone.add(Record(service_name, "CNAME", normalise(spec["externalName"])))
    elif cluster_ip == "None":
        _add_headless(zone, service_name, slices)
        zone.names.add(service_name)
    elif cluster_ip and ":" not in cluster_ip:
        _add_cluster_ip(zone, service, service_name)


def build_zone(services: Iterable[Obj], endpoint_slices: Iterable[Obj], domain: str) -> Zone:
    """Every record the cluster's Services and EndpointSlices call for."""
    zone = Zone(normalise(domain))
    zone.names.update({zone.domain, f"svc.{zone.domain}", f"pod.{zone.domain}"})
    grouped = _slices_by_service(endpoint_slices)
    for service in services:
        meta = service.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        add_service(zone, service, grouped.get(key, []))
    for records in zone.records.values():
        records.sort(key=lambda r: str(r.value))
    return zone


def in_zone(zone: Zone, name: str) -> bool:
    name = normalise(name)
    return name == zone.domain or name.endswith("." + zone.domain)


def answers_for(zone: Zone, name: str) -> bool:
    """True for names this server is the authority for: the cluster domain, and the reverse
    names of ClusterIPs."""
    return in_zone(zone, name) or normalise(name) in zone.reverse


def pod_record(zone: Zone, name: str) -> Record | None:
    """`a-b-c-d.<ns>.pod.<domain>` → its A record, when a-b-c-d is an IPv4 address."""
    labels = name[: -len(zone.domain) - 1].split(".")
    if len(labels) != 3 or labels[2] != "pod":
        return None
    try:
        address = ipaddress.IPv4Address(labels[0].replace("-", "."))
    except ValueError:
        return None
    return Record(name, "A", str(address))


def _additional(zone: Zone, answers: list[Record]) -> tuple[Record, ...]:
    """A records of SRV targets, so clients need no second query."""
    extra = []
    for record in answers:
        if isinstance(record.value, Srv):
            extra += [r for r in zone.records.get(record.value.target, []) if r.rtype == "A"]
    return tuple(dict.fromkeys(extra))


def lookup(zone: Zone, name: str, rtype: str) -> Lookup:
    """Answer `name` `rtype` (`ANY` for all types) from the zone."""
    name = normalise(name)
    if name in zone.reverse:
        found = [r for r in zone.reverse[name] if rtype in ("PTR", "ANY")]
        return Lookup("NOERROR", tuple(found))
    records = list(zone.records.get(name, []))
    if not records and in_zone(zone, name) and name != zone.domain:
        pod = pod_record(zone, name)
        records = [pod] if pod is not None else []
    if not records and name not in zone.names:
        return Lookup("NXDOMAIN")
    cname = [r for r in records if r.rtype == "CNAME"]
    answers = cname or [r for r in records if rtype in (r.rtype, "ANY")]
    return Lookup("NOERROR", tuple(answers), _additional(zone, answers))
