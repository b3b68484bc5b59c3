"""discovery.k8s.io/v1 EndpointSlice: a Service's endpoints, in slices of one address type.

Columns follow upstream's `printEndpointSlice` (up to three ports and addresses, then
"+ N more..."); defaults and validation follow pkg/apis/discovery.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from unistack.apiserver.errors import (
    FieldError,
    duplicate_field,
    invalid_field,
    required_field,
)
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import (
    check_enum,
    check_immutable,
    check_name,
    check_port_number,
    problems_at,
    type_error,
)
from unistack.apiserver.kinds.objects import Obj, dicts_in, list_of, set_default
from unistack.apiserver.kinds.pod_validation import PROTOCOLS
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.validation import dns1123_label_errors, dns1123_subdomain_errors

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_ADDRESSES = 100
_UNSET = "<unset>"


def _first_three(items: list[str]) -> str:
    if not items:
        return _UNSET
    text = ",".join(items[:3])
    return f"{text} + {len(items) - 3} more..." if len(items) > 3 else text


def slice_ports(endpoint_slice: Obj) -> str:
    names = []
    for port in dicts_in(endpoint_slice.get("ports")):
        number, name = port.get("port"), port.get("name")
        names.append(str(number) if number is not None else (str(name) if name else "*"))
    return _first_three(names)


def slice_endpoints(endpoint_slice: Obj) -> str:
    addresses = [
        str(address)
        for endpoint in dicts_in(endpoint_slice.get("endpoints"))
        for address in list_of(endpoint.get("addresses"))
    ]
    return _first_three(addresses)


ENDPOINT_SLICE_COLUMNS = (
    Column("AddressType", cells.text_at("addressType"), description="The type of address."),
    Column("Ports", slice_ports, description="The ports of the slice."),
    Column("Endpoints", slice_endpoints, description="The addresses of the slice."),
    cells.AGE_COLUMN,
)


def default_endpoint_slice(endpoint_slice: Obj) -> None:
    for port in dicts_in(endpoint_slice.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        set_default(port, "protocol", "TCP")


def validate_endpoint_slice(endpoint_slice: Obj, old: Obj | None) -> list[FieldError]:
    address_type = endpoint_slice.get("addressType")
    errs = check_enum("addressType", address_type, ADDRESS_TYPES)
    for i, endpoint in enumerate(list_of(endpoint_slice.get("endpoints"))):
        errs += _check_endpoint(endpoint, f"endpoints[{i}]", address_type)
    errs += _check_ports(endpoint_slice.get("ports"))
    if old is not None:
        errs += check_immutable("addressType", address_type, old.get("addressType"))
    return errs


def _check_endpoint(endpoint: Any, path: str, address_type: Any) -> list[FieldError]:
    if not isinstance(endpoint, dict):
        return [type_error(path, endpoint, "object")]
    addresses = list_of(endpoint.get("addresses"))
    if not addresses:
        return [required_field(f"{path}.addresses", "must contain at least 1 address")]
    if len(addresses) > MAX_ADDRESSES:
        detail = f"must have at most {MAX_ADDRESSES} items"
        return [FieldError("FieldValueTooMany", f"{path}.addresses", detail, len(addresses))]
    errs: list[FieldError] = []
    for j, address in enumerate(addresses):
        errs += _check_address(f"{path}.addresses[{j}]", address, address_type)
    hostname = endpoint.get("hostname")
    if hostname not in (None, ""):
        errs += check_name(f"{path}.hostname", hostname, dns1123_label_errors)
    return errs


def _check_address(field: str, address: Any, address_type: Any) -> list[FieldError]:
    text = str(address)
    if address_type == "FQDN":
        return problems_at(field, address, dns1123_subdomain_errors(text))
    if address_type in ("IPv4", "IPv6") and not _is_ip_version(text, address_type):
        return [invalid_field(field, address, f"must be a valid {address_type} address")]
    return []


def _is_ip_version(text: str, address_type: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip.version == (4 if address_type == "IPv4" else 6)


def _check_ports(ports: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(dicts_in(ports)):
        field = f"ports[{i}]"
        name = port.get("name")
        if name:
            errs += check_name(f"{field}.name", name, dns1123_label_errors)
        if str(name or "") in names:
            errs.append(duplicate_field(f"{field}.name", name or ""))
        names.add(str(name or ""))
        if port.get("port") is not None:
            errs += check_port_number(f"{field}.port", port["port"])
        errs += check_enum(f"{field}.protocol", port.get("protocol"), PROTOCOLS)
    return errs


ENDPOINT_SLICE = ResourceType(
    group="discovery.k8s.io",
    version="v1",
    kind="EndpointSlice",
    plural="endpointslices",
    singular="endpointslice",
    namespaced=True,
    columns=ENDPOINT_SLICE_COLUMNS,
    defaulter=default_endpoint_slice,
    validator=validate_endpoint_slice,
)
