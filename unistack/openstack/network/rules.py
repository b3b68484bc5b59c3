"""Security group rules, validated as Neutron validates them (pure; no I/O).

`checked_rule` turns a request body into the stored attributes: direction, ethertype,
protocol (a name or a number 0-255), the port range (ports for TCP-like protocols, type and
code for ICMP), and a remote (an IP prefix of the rule's ethertype, or a group). `same_rule`
says when two rules are duplicates (409 SecurityGroupRuleExists).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from unistack.openstack.network.service import bad

Obj = dict[str, Any]
PROTOCOLS = (
    "ah", "dccp", "egp", "esp", "gre", "hopopt", "icmp", "igmp", "ipip", "ipv6-encap",
    "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route", "ospf", "pgm",
    "rsvp", "sctp", "tcp", "udp", "udplite", "vrrp",
)  # fmt: skip
PORTED = {"tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136"}
ICMP = {"icmp", "icmpv6", "ipv6-icmp", "1", "58"}
ATTRIBUTES = (
    "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
    "remote_ip_prefix", "remote_group_id", "remote_address_group_id",
)  # fmt: skip
ALLOWED = {*ATTRIBUTES, "security_group_id", "description", "project_id", "tenant_id"}


def _protocol(value: Any) -> str | None:
    if value is None or value == "" or value == "any":
        return None
    text = str(value).lower()
    if text in PROTOCOLS or (text.isdigit() and 0 <= int(text) <= 255):
        return text
    raise bad(
        f"Security group rule protocol {value} not supported. Only protocol values "
        f"{list(PROTOCOLS)} and integer representations [0 to 255] are supported.",
        "SecurityGroupRuleInvalidProtocol",
    )


def _port(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise bad(f"Invalid value for port {value}", "SecurityGroupInvalidPortValue") from exc


def _ports(protocol: str | None, low: int | None, high: int | None) -> None:
    if low is None and high is None:
        return
    if protocol in PORTED:
        for port in (low, high):
            if port is not None and not 0 <= port <= 65535:
                raise bad(f"Invalid value for port {port}", "SecurityGroupInvalidPortValue")
        if low is None or high is None or low > high:
            raise bad(
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                "SecurityGroupInvalidPortRange",
            )
        return
    if protocol in ICMP:
        for field, attr, value in (
            ("type", "port_range_min", low),
            ("code", "port_range_max", high),
        ):
            if value is not None and not 0 <= value <= 255:
                raise bad(
                    f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255.",
                    "SecurityGroupInvalidIcmpValue",
                )
        if low is None:
            raise bad(
                f"ICMP code (port-range-max) {high} is provided but ICMP type "
                "(port-range-min) is missing.",
                "SecurityGroupMissingIcmpType",
            )
        return
    raise bad(
        f"Invalid protocol {protocol} for port range, only supported for TCP, UDP, "
        "UDPLITE, SCTP and DCCP.",
        "SecurityGroupInvalidProtocolForPortRange",
    )


def _prefix(value: Any, ethertype: str) -> str | None:
    if value is None:
        return None
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError as exc:
        raise bad(
            f"Invalid input for remote_ip_prefix. Reason: '{value}' is not a valid IP subnet."
        ) from exc
    if f"IPv{network.version}" != ethertype:
        raise bad(
            f"Conflicting value ethertype {ethertype} for CIDR {value}",
            "SecurityGroupRuleParameterConflict",
        )
    return str(network)


def checked_rule(body: Obj) -> Obj:
    """The stored attributes of a rule (without ids); 400 with Neutron's message if invalid."""
    for key in body:
        if key not in ALLOWED:
            raise bad(f"Unrecognized attribute(s) '{key}'")
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise bad(f"Invalid input for direction. Reason: {direction} is not in valid_values.")
    ethertype = body.get("ethertype") or "IPv4"
    if ethertype not in ("IPv4", "IPv6"):
        raise bad(f"Invalid input for ethertype. Reason: {ethertype} is not in valid_values.")
    protocol = _protocol(body.get("protocol"))
    low, high = _port(body.get("port_range_min")), _port(body.get("port_range_max"))
    _ports(protocol, low, high)
    if body.get("remote_ip_prefix") and body.get("remote_group_id"):
        raise bad(
            "Only remote_ip_prefix or remote_group_id may be provided.",
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        )
    prefix = _prefix(body.get("remote_ip_prefix"), ethertype)
    if protocol in ("icmpv6", "ipv6-icmp") and ethertype == "IPv4":
        raise bad(
            f"Ethertype IPv4 is not supported for protocol {protocol}.",
            "SecurityGroupEthertypeConflictWithProtocol",
        )
    return {
        "direction": direction,
        "ethertype": ethertype,
        "protocol": protocol,
        "port_range_min": low,
        "port_range_max": high,
        "remote_ip_prefix": prefix,
        "remote_group_id": body.get("remote_group_id"),
        "remote_address_group_id": None,
    }


def _normal(prefix: str | None, ethertype: str) -> str:
    return prefix or ("0.0.0.0/0" if ethertype == "IPv4" else "::/0")


def same_rule(a: Obj, b: Obj) -> bool:
    keys = [k for k in ATTRIBUTES if k != "remote_ip_prefix"]
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    return _normal(a.get("remote_ip_prefix"), a["ethertype"]) == _normal(
        b.get("remote_ip_prefix"), b["ethertype"]
    )
