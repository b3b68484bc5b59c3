"""Service and Endpoints: columns, defaulting and validation.

Columns follow upstream's `printService` (TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S) such as
"80/TCP" or "80:30080/TCP") and `printEndpoints` ("10.0.0.1:80,... + 2 more..."). Defaults
follow SetDefaults_Service plus the single-stack IP family the allocator would record;
cluster IPs and node ports themselves are allocated elsewhere, when the Service is stored.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson

from unistack.apiserver.errors import (
    FieldError,
    duplicate_field,
    forbidden_field,
    invalid_field,
    required_field,
)
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import (
    check_enum,
    check_name,
    check_port_number,
    check_port_number_or_name,
    problems_at,
    type_error,
)
from unistack.apiserver.kinds.objects import (
    Obj,
    dict_of,
    dicts_in,
    dig,
    ensure_dict,
    list_of,
    set_default,
)
from unistack.apiserver.kinds.pod_validation import PROTOCOLS
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    validate_labels,
)

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
_EXTERNAL_TYPES = ("NodePort", "LoadBalancer")
_TRAFFIC_POLICIES = ("Cluster", "Local")
_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_SESSION_TIMEOUT = 10800


def primary_cluster_ip(spec: Obj) -> str:
    ips = list_of(spec.get("clusterIPs"))
    return str(spec.get("clusterIP") or (ips[0] if ips else "") or "")


def service_cluster_ip(service: Obj) -> str:
    return primary_cluster_ip(dict_of(service.get("spec"))) or cells.NONE


def service_external_ip(service: Obj) -> str:
    spec = dict_of(service.get("spec"))
    kind, external = spec.get("type"), [str(ip) for ip in list_of(spec.get("externalIPs"))]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or cells.NONE
    if kind == "LoadBalancer":
        ingress = _load_balancer_addresses(service)
        return ",".join(ingress + external) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _load_balancer_addresses(service: Obj) -> list[str]:
    ingress = dicts_in(dig(service, "status", "loadBalancer", "ingress"))
    return sorted(
        {str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")}
    )


def service_ports(service: Obj) -> str:
    pieces = []
    for port in dicts_in(dig(service, "spec", "ports")):
        number, protocol, node_port = port.get("port"), port.get("protocol"), port.get("nodePort")
        pieces.append(f"{number}:{node_port}/{protocol}" if node_port else f"{number}/{protocol}")
    return ",".join(pieces) or cells.NONE


SERVICE_COLUMNS = (
    Column("Type", cells.text_at("spec", "type"), description="How the service is exposed."),
    Column("Cluster-IP", service_cluster_ip, description="The service's cluster IP."),
    Column("External-IP", service_external_ip, description="External addresses."),
    Column("Port(s)", service_ports, description="The ports the service exposes."),
    cells.AGE_COLUMN,
    Column(
        "Selector",
        lambda svc: cells.format_labels(dig(svc, "spec", "selector")),
        priority=1,
        description="The labels of the pods the service routes to.",
    ),
)


def default_service(service: Obj) -> None:
    spec = ensure_dict(service, "spec")
    if spec is None:
        return
    set_default(spec, "type", "ClusterIP")
    _default_session_affinity(spec)
    for port in dicts_in(spec.get("ports")):
        set_default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    kind = spec["type"]
    if kind in _EXTERNAL_TYPES:
        set_default(spec, "externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        set_default(spec, "allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":
        set_default(spec, "internalTrafficPolicy", "Cluster")
        set_default(spec, "ipFamilyPolicy", "SingleStack")
        set_default(spec, "ipFamilies", ["IPv4"])
        _sync_cluster_ips(spec)


def _default_session_affinity(spec: Obj) -> None:
    set_default(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = ensure_dict(spec, "sessionAffinityConfig")
        client_ip = ensure_dict(config, "clientIP") if config is not None else None
        if client_ip is not None:
            set_default(client_ip, "timeoutSeconds", _SESSION_TIMEOUT)


def _sync_cluster_ips(spec: Obj) -> None:
    """Keep the legacy `clusterIP` and the list `clusterIPs` saying the same thing."""
    ips = spec.get("clusterIPs")
    if spec.get("clusterIP") and not ips:
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif isinstance(ips, list) and ips and not spec.get("clusterIP"):
        spec["clusterIP"] = ips[0]


def validate_service(service: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(service.get("spec"))
    kind = spec.get("type")
    errs = check_enum("spec.type", kind, SERVICE_TYPES)
    errs += check_enum("spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    errs += _check_service_ports(spec, kind)
    errs += validate_labels(spec.get("selector"), "spec.selector")
    errs += _check_cluster_ips(spec, kind)
    errs += _check_external_name(spec, kind)
    errs += _check_policies(spec)
    if old is not None:
        errs += _check_cluster_ip_unchanged(spec, dict_of(old.get("spec")))
    return errs


def _check_service_ports(spec: Obj, kind: Any) -> list[FieldError]:
    ports = spec.get("ports")
    if not ports:
        if spec.get("clusterIP") != "None" and kind != "ExternalName":
            return [required_field("spec.ports")]
        return []
    if not isinstance(ports, list):
        return [type_error("spec.ports", ports, "array")]
    errs: list[FieldError] = []
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        field = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            errs.append(type_error(field, port, "object"))
            continue
        errs += _check_service_port(port, field, len(ports) > 1, names, kind)
        key = _set_key(port.get("port"), port.get("protocol"))
        if key in seen:
            duplicate = {"port": port.get("port"), "protocol": port.get("protocol")}
            errs.append(duplicate_field(field, duplicate))
        seen.add(key)
        errs += _check_node_port_unique(port, field, node_ports)
    return errs


def _check_service_port(
    port: Obj, field: str, name_required: bool, names: set[str], kind: Any
) -> list[FieldError]:
    name = port.get("name")
    errs: list[FieldError] = []
    if name in (None, ""):
        errs += [required_field(f"{field}.name")] if name_required else []
    else:
        errs += check_name(f"{field}.name", name, dns1123_label_errors)
        errs += [duplicate_field(f"{field}.name", name)] if str(name) in names else []
        names.add(str(name))
    errs += check_port_number(f"{field}.port", port.get("port"))
    errs += check_enum(f"{field}.protocol", port.get("protocol"), PROTOCOLS)
    errs += check_port_number_or_name(f"{field}.targetPort", port.get("targetPort"))
    node_port = port.get("nodePort")
    if node_port not in (None, 0):
        errs += check_port_number(f"{field}.nodePort", node_port)
        if kind == "ClusterIP":
            detail = "may not be used when `type` is 'ClusterIP'"
            errs.append(forbidden_field(f"{field}.nodePort", detail))
    return errs


def _set_key(*values: Any) -> tuple[Any, ...]:
    """Values to find duplicates by; a list or map (reported as mistyped) as its JSON text."""
    return tuple(orjson.dumps(v) if isinstance(v, list | dict) else v for v in values)


def _check_node_port_unique(port: Obj, field: str, seen: set[tuple[Any, Any]]) -> list[FieldError]:
    node_port = port.get("nodePort")
    if node_port in (None, 0):
        return []
    key = _set_key(node_port, port.get("protocol"))
    if key in seen:
        return [duplicate_field(f"{field}.nodePort", node_port)]
    seen.add(key)
    return []


def _check_cluster_ips(spec: Obj, kind: Any) -> list[FieldError]:
    ips = list_of(spec.get("clusterIPs"))
    if kind == "ExternalName":
        if spec.get("clusterIP") or ips:
            return [forbidden_field("spec.clusterIPs", "may not be set for ExternalName services")]
        return []
    errs: list[FieldError] = []
    if ips and spec.get("clusterIP") and spec["clusterIP"] != ips[0]:
        errs.append(invalid_field("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    for i, ip in enumerate(ips or [spec.get("clusterIP")]):
        field = f"spec.clusterIPs[{i}]"
        if ip == "None" and kind in _EXTERNAL_TYPES:
            detail = f"may not be set to 'None' for {kind} services"
            errs.append(invalid_field(field, ip, detail))
        elif ip not in (None, "", "None") and not is_ip(ip):
            errs.append(invalid_field(field, ip, INVALID_IP))
    return errs


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _check_external_name(spec: Obj, kind: Any) -> list[FieldError]:
    if kind != "ExternalName":
        return []
    name = spec.get("externalName")
    if name in (None, ""):
        return [required_field("spec.externalName")]
    clean = str(name).removesuffix(".")
    return problems_at("spec.externalName", name, dns1123_subdomain_errors(clean))


def _check_policies(spec: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("internalTrafficPolicy", "externalTrafficPolicy"):
        errs += check_enum(f"spec.{key}", spec.get(key), _TRAFFIC_POLICIES, required=False)
    policy = spec.get("ipFamilyPolicy")
    errs += check_enum("spec.ipFamilyPolicy", policy, _FAMILY_POLICIES, required=False)
    for i, family in enumerate(list_of(spec.get("ipFamilies"))):
        errs += check_enum(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6"))
    return errs


def _check_cluster_ip_unchanged(new: Obj, old: Obj) -> list[FieldError]:
    if "ExternalName" in (new.get("type"), old.get("type")):
        return []
    new_ip, old_ip = primary_cluster_ip(new), primary_cluster_ip(old)
    if new_ip and old_ip and new_ip != old_ip:
        return [invalid_field("spec.clusterIPs[0]", new_ip, "may not change once set")]
    return []


SERVICE = ResourceType(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    singular="service",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    status_subresource=True,
    columns=SERVICE_COLUMNS,
    defaulter=default_service,
    validator=validate_service,
    extra={"name_format": "dns1035label"},
)


def endpoints_text(endpoints: Obj) -> str:
    """Up to three `ip:port` pairs, then "+ N more..."; "<none>" without subsets."""
    subsets = dicts_in(endpoints.get("subsets"))
    if not subsets:
        return cells.NONE
    shown: list[str] = []
    count = 0
    for subset in subsets:
        for address in _subset_addresses(subset):
            count += 1
            if len(shown) < 3:
                shown.append(address)
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _subset_addresses(subset: Obj) -> list[str]:
    ips = [str(a.get("ip", "")) for a in dicts_in(subset.get("addresses"))]
    ports = dicts_in(subset.get("ports"))
    if not ports:
        return ips
    return [_host_port(ip, port.get("port")) for port in ports for ip in ips]


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


ENDPOINTS_COLUMNS = (
    Column("Endpoints", endpoints_text, description="The endpoints' addresses and ports."),
    cells.AGE_COLUMN,
)


def default_endpoints(endpoints: Obj) -> None:
    for subset in dicts_in(endpoints.get("subsets")):
        for port in dicts_in(subset.get("ports")):
            set_default(port, "protocol", "TCP")


def validate_endpoints(endpoints: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in enumerate(list_of(endpoints.get("subsets"))):
        errs += _check_subset(dict_of(subset), f"subsets[{i}]")
    return errs


def _check_subset(subset: Obj, path: str) -> list[FieldError]:
    if not subset.get("addresses") and not subset.get("notReadyAddresses"):
        return [required_field(path, "must specify `addresses` or `notReadyAddresses`")]
    errs: list[FieldError] = []
    for key in ("addresses", "notReadyAddresses"):
        for j, address in enumerate(list_of(subset.get(key))):
            ip = dict_of(address).get("ip")
            if not is_ip(ip):
                errs.append(invalid_field(f"{path}.{key}[{j}].ip", ip, INVALID_IP))
    ports = list_of(subset.get("ports"))
    for j, port in enumerate(ports):
        errs += _check_endpoint_port(dict_of(port), f"{path}.ports[{j}]", len(ports) > 1)
    return errs


def _check_endpoint_port(port: Obj, field: str, name_required: bool) -> list[FieldError]:
    name = port.get("name")
    errs: list[FieldError] = []
    if name in (None, ""):
        errs += [required_field(f"{field}.name")] if name_required else []
    else:
        errs += check_name(f"{field}.name", name, dns1123_label_errors)
    errs += check_port_number(f"{field}.port", port.get("port"))
    return errs + check_enum(f"{field}.protocol", port.get("protocol"), PROTOCOLS)


ENDPOINTS = ResourceType(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    singular="endpoints",
    namespaced=True,
    short_names=("ep",),
    columns=ENDPOINTS_COLUMNS,
    defaulter=default_endpoints,
    validator=validate_endpoints,
)
