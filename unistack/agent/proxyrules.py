"""Services as one nftables table: the pure half of the service proxy (kube-proxy's role).

`render(services, endpoint_slices, settings)` turns Services and EndpointSlices into the text of
one `table ip <name> { ... }` that does what kube-proxy's nftables mode does:

- `nat-prerouting` (optionally only for `settings.iifnames`) and `nat-output` jump to
  `services`, which looks `ip daddr . meta l4proto . th dport` up in the verdict map
  `service-ips` (ClusterIPs, externalIPs and LoadBalancer ingress IPs) and, for addresses of
  this host (`fib daddr type local`), `meta l4proto . th dport` in `service-nodeports`;
- each service port has a chain `svc-…` spreading new connections over its endpoints with
  `numgen random mod N vmap`, and each endpoint a chain `ep-…` that DNATs to `IP:port` (the
  port of the EndpointSlice port named like the service port); ready endpoints are used, else
  serving-and-terminating ones (kube-proxy's fallback);
- a service port with no usable endpoint is in the set `no-endpoint-services` (or
  `no-endpoint-nodeports`), which filter chains (reject is only valid in filter chains on
  input/forward/output) answer with a TCP reset or ICMP port unreachable;
- traffic that needs SNAT gets the mark bit `settings.masquerade_bit`: everything entering
  through a NodePort or external IP (chain `ext-…`), hairpin traffic (a pod reaching its own
  service and landing on itself: the endpoint chain marks `ip saddr == endpoint IP`), and with
  `settings.cluster_cidr` anything to a ClusterIP from outside that CIDR; `nat-postrouting`
  masquerades marked packets.

Not done: SCTP ports (skipped), sessionAffinity ClientIP (ignored: connections are spread at
random), externalTrafficPolicy/internalTrafficPolicy Local (treated as Cluster), IPv6.
ExternalName and headless Services get no rules. Chain names are stable: a hash of what they
stand for, plus a readable tail. `unistack.agent.proxy` observes the API and applies the text
through `unistack.dataplane.nftables`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp"}  # SCTP is skipped
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
_UNSAFE = re.compile(r"[^A-Za-z0-9_./-]")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How the service proxy's table is made.

    `iifnames`: when given, only packets arriving on these interfaces are captured at
    prerouting (two unistack instances on one host then leave each other's traffic alone).
    `cluster_cidr`: when given, traffic to a ClusterIP from outside it is masqueraded.
    """

    table: str = "unistack-proxy"
    iifnames: tuple[str, ...] = ()
    cluster_cidr: str | None = None
    masquerade_bit: int = 0x4000


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with where it is reachable and where it leads."""

    namespace: str
    service: str
    name: str
    protocol: str  # nft spelling: tcp, udp
    port: int
    cluster_ip: str
    node_port: int | None
    external_ips: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.service}/{self.protocol}/{self.name or self.port}"

    @property
    def chain(self) -> str:
        return chain_name("svc", self.label)

    @property
    def external_chain(self) -> str:
        return chain_name("ext", self.label)

    def endpoint_chain(self, endpoint: Endpoint) -> str:
        return chain_name("ep", f"{self.label}__{endpoint.ip}/{endpoint.port}")


def chain_name(prefix: str, label: str) -> str:
    """A valid, stable nftables identifier: prefix, a hash of the label, a readable tail."""
    digest = hashlib.sha256(label.encode()).hexdigest()[:10]
    tail = _UNSAFE.sub("_", label)[-100:]
    return f"{prefix}-{digest}-{tail}"


# --- from API objects to service ports (pure) --------------------------------------------------


def has_rules(service: Obj) -> bool:
    """ExternalName and headless Services (and ones without an IP yet) get no rules."""
    spec = service.get("spec") or {}
    ip = str(spec.get("clusterIP") or "")
    return spec.get("type") != "ExternalName" and bool(ip) and ip != "None" and ":" not in ip


def _condition(endpoint: Obj, name: str, default: bool) -> bool:
    value = (endpoint.get("conditions") or {}).get(name)
    return default if value is None else bool(value)


def usable_endpoints(candidates: Iterable[tuple[Obj, int]]) -> tuple[Endpoint, ...]:
    """The ready endpoints; when there are none, the serving and terminating ones.

    Kubernetes reads a missing `ready` or `serving` as true, a missing `terminating` as false.
    """
    ready: dict[Endpoint, None] = {}
    fallback: dict[Endpoint, None] = {}
    for endpoint, port in candidates:
        ready_now = _condition(endpoint, "ready", True)
        serving = _condition(endpoint, "serving", ready_now)
        terminating = _condition(endpoint, "terminating", False)
        for ip in (endpoint.get("addresses") or [])[:1]:
            if ready_now:
                ready[Endpoint(ip, port)] = None
            elif serving and terminating:
                fallback[Endpoint(ip, port)] = None
    return tuple(sorted(ready or fallback, key=lambda e: (e.ip, e.port)))


def _slice_candidates(
    slices: Iterable[Obj], port_name: str, protocol: str
) -> list[tuple[Obj, int]]:
    """Endpoints of the slices with the port (number) their slice gives `port_name`."""
    found: list[tuple[Obj, int]] = []
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") != "IPv4":
            continue
        for port in endpoint_slice.get("ports") or []:
            same_name = (port.get("name") or "") == port_name
            if same_name and (port.get("protocol") or "TCP") == protocol and port.get("port"):
                endpoints = endpoint_slice.get("endpoints") or []
                found.extend((endpoint, int(port["port"])) for endpoint in endpoints)
    return found


def _external_ips(service: Obj) -> tuple[str, ...]:
    spec = service.get("spec") or {}
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = list(spec.get("externalIPs") or []) + [i["ip"] for i in ingress if i.get("ip")]
    return tuple(ip for ip in dict.fromkeys(ips) if ":" not in ip)


def service_ports(service: Obj, slices: Iterable[Obj]) -> list[ServicePort]:
    """The Service's TCP and UDP ports with their usable endpoints."""
    if not has_rules(service):
        return []
    meta, spec = service["metadata"], service.get("spec") or {}
    slices = list(slices)
    node_ports = spec.get("type") in NODE_PORT_TYPES
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            continue
        name = port.get("name") or ""
        candidates = _slice_candidates(slices, name, protocol)
        ports.append(
            ServicePort(
                namespace=meta.get("namespace") or "default",
                service=meta["name"],
                name=name,
                protocol=PROTOCOLS[protocol],
                port=int(port["port"]),
                cluster_ip=spec["clusterIP"],
                node_port=int(port["nodePort"]) if node_ports and port.get("nodePort") else None,
                external_ips=_external_ips(service),
                endpoints=usable_endpoints(candidates),
            )
        )
    return ports


def slices_by_service(endpoint_slices: Iterable[Obj]) -> dict[tuple[str, str], list[Obj]]:
    """EndpointSlices grouped by (namespace, `kubernetes.io/service-name`)."""
    grouped: dict[tuple[str, str], list[Obj]] = {}
    for endpoint_slice in endpoint_slices:
        meta = endpoint_slice.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            grouped.setdefault((meta.get("namespace") or "default", service), []).append(
                endpoint_slice
            )
    return grouped


def all_service_ports(services: Iterable[Obj], endpoint_slices: Iterable[Obj]) -> list[ServicePort]:
    grouped = slices_by_service(endpoint_slices)
    ports: list[ServicePort] = []
    for service in services:
        meta = service.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        ports.extend(service_ports(service, grouped.get(key, [])))
    return sorted(ports, key=lambda p: p.label)


# --- from service ports to nftables text (pure) ------------------------------------------------


def _chain(name: str, *rules: str) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{rule}" for rule in rules), "\t}"]


def _base_chain(name: str, kind: str, hook: str, priority: str, *rules: str) -> list[str]:
    head = f"type {kind} hook {hook} priority {priority}; policy accept;"
    return _chain(name, head, *rules)


def _collection(keyword: str, name: str, type_: str, elements: list[str]) -> list[str]:
    lines = [f"\t{keyword} {name} {{", f"\t\ttype {type_}"]
    if elements:
        lines.append("\t\telements = { " + ",\n\t\t\t     ".join(elements) + " }")
    return [*lines, "\t}"]


def _endpoint_chains(port: ServicePort, mark_chain: str) -> list[str]:
    lines: list[str] = []
    for endpoint in port.endpoints:
        lines += _chain(
            port.endpoint_chain(endpoint),
            f"ip saddr {endpoint.ip} jump {mark_chain}",
            f"meta l4proto {port.protocol} dnat to {endpoint.ip}:{endpoint.port}",
        )
    return lines


def _service_chain(port: ServicePort, settings: ProxySettings) -> list[str]:
    rules = []
    if settings.cluster_cidr:
        rules.append(
            f"ip daddr {port.cluster_ip} ip saddr != {settings.cluster_cidr} "
            "jump mark-for-masquerade"
        )
    targets = ", ".join(
        f"{n} : goto {port.endpoint_chain(e)}" for n, e in enumerate(port.endpoints)
    )
    rules.append(f"numgen random mod {len(port.endpoints)} vmap {{ {targets} }}")
    return _chain(port.chain, *rules)


def _is_external(port: ServicePort) -> bool:
    return port.node_port is not None or bool(port.external_ips)


def _per_port_chains(ports: list[ServicePort], settings: ProxySettings) -> list[str]:
    lines: list[str] = []
    for port in ports:
        if not port.endpoints:
            continue
        lines += _endpoint_chains(port, "mark-for-masquerade")
        lines += _service_chain(port, settings)
        if _is_external(port):
            lines += _chain(port.external_chain, "jump mark-for-masquerade", f"goto {port.chain}")
    return lines


def _maps_and_sets(ports: list[ServicePort]) -> list[str]:
    service_ips, nodeports, no_endpoint_ips, no_endpoint_nodeports = [], [], [], []
    for port in ports:
        key = f"{port.protocol} . {port.port}"
        if port.endpoints:
            service_ips.append(f"{port.cluster_ip} . {key} : goto {port.chain}")
            external = port.external_chain
            service_ips += [f"{ip} . {key} : goto {external}" for ip in port.external_ips]
            if port.node_port is not None:
                nodeports.append(f"{port.protocol} . {port.node_port} : goto {port.external_chain}")
        else:
            no_endpoint_ips += [f"{ip} . {key}" for ip in (port.cluster_ip, *port.external_ips)]
            if port.node_port is not None:
                no_endpoint_nodeports.append(f"{port.protocol} . {port.node_port}")
    ip_key, port_key = "ipv4_addr . inet_proto . inet_service", "inet_proto . inet_service"
    return [
        *_collection("map", "service-ips", f"{ip_key} : verdict", sorted(set(service_ips))),
        *_collection("map", "service-nodeports", f"{port_key} : verdict", sorted(set(nodeports))),
        *_collection("set", "no-endpoint-services", ip_key, sorted(set(no_endpoint_ips))),
        *_collection("set", "no-endpoint-nodeports", port_key, sorted(set(no_endpoint_nodeports))),
    ]


def _fixed_chains_before(settings: ProxySettings) -> list[str]:
    bit = f"0x{settings.masquerade_bit:x}"
    return [
        *_chain("mark-for-masquerade", f"meta mark set meta mark | {bit}"),
        *_chain(
            "masquerading",
            f"meta mark & {bit} == 0 return",
            f"meta mark set meta mark ^ {bit}",
            "masquerade fully-random",
        ),
        *_chain("reject-chain", "meta l4proto tcp reject with tcp reset", "reject"),
    ]


LOCAL_DESTINATION = "fib daddr type local ip daddr != 127.0.0.0/8"
SERVICE_TUPLE = "ip daddr . meta l4proto . th dport"


def _lookup_chains() -> list[str]:
    """`services` sends to the per-port chains; `endpoints-check` rejects ports with none."""
    return [
        *_chain(
            "services",
            f"{SERVICE_TUPLE} vmap @service-ips",
            f"{LOCAL_DESTINATION} meta l4proto . th dport vmap @service-nodeports",
        ),
        *_chain(
            "endpoints-check",
            f"{SERVICE_TUPLE} @no-endpoint-services goto reject-chain",
            f"{LOCAL_DESTINATION} meta l4proto . th dport @no-endpoint-nodeports goto reject-chain",
        ),
    ]


def _base_chains(settings: ProxySettings) -> list[str]:
    """The hooks: (name, type, hook, priority, rule), the iifname filter where packets enter."""
    only_from = ""
    if settings.iifnames:
        only_from = "iifname { " + ", ".join(f'"{n}"' for n in settings.iifnames) + " } "
    check = "ct state new jump endpoints-check"
    hooks = [
        ("filter-input", "filter", "input", "-110", only_from + check),
        ("filter-forward", "filter", "forward", "-110", only_from + check),
        ("filter-output", "filter", "output", "-110", check),
        ("nat-prerouting", "nat", "prerouting", "dstnat", only_from + "jump services"),
        ("nat-output", "nat", "output", "-100", "jump services"),
        ("nat-postrouting", "nat", "postrouting", "srcnat", "jump masquerading"),
    ]
    return [line for hook in hooks for line in _base_chain(*hook)]


def render(services: Iterable[Obj], endpoint_slices: Iterable[Obj], settings: ProxySettings) -> str:
    """The whole `table ip <settings.table>` for these Services and EndpointSlices.

    Everything a rule refers to is declared before it, so that `nft -f` can load the table in
    one transaction.
    """
    ports = all_service_ports(services, endpoint_slices)
    lines = [
        f"table ip {settings.table} {{",
        *_fixed_chains_before(settings),
        *_per_port_chains(ports, settings),
        *_maps_and_sets(ports),
        *_lookup_chains(),
        *_base_chains(settings),
        "}",
    ]
    return "\n".join(lines) + "\n"
