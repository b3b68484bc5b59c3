"""OpenAPI string formats a custom resource schema may name (`date-time`, `uuid`, `ipv4`, ...).

`unistack.apiserver.schema` checks string values with `conforms`. The checks are looser than
kube-openapi's strfmt where its rules are Go-specific; a format it does not know passes, as
apiextensions-apiserver ignores unsupported formats.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any


def _parses(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            parse(value)
        except (ValueError, binascii.Error):
            return False
        return True

    return check


_DATE_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?")
_UUID_RE = re.compile(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
_MAC_RE = re.compile(r"(?i)([0-9a-f]{2}[:-]){5}[0-9a-f]{2}|([0-9a-f]{4}\.){2}[0-9a-f]{4}")
_HOSTNAME_RE = re.compile(
    r"(?i)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)
_DURATION_RE = re.compile(r"(\s*[-+]?\d+(\.\d+)?\s*(ns|us|µs|ms|s|m|h|d|w)[a-z]*\s*)+")


def _is_date_time(value: str) -> bool:
    return bool(_DATE_TIME_RE.fullmatch(value)) and _parses(datetime.fromisoformat)(value)


_FORMATS: dict[str, Callable[[str], bool]] = {
    "datetime": _is_date_time,
    "date": _parses(date.fromisoformat),
    "byte": _parses(lambda v: base64.b64decode(v, validate=True)),
    "uuid": lambda v: bool(_UUID_RE.fullmatch(v)),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda v: ipaddress.ip_network(v, strict=False)),
    "mac": lambda v: bool(_MAC_RE.fullmatch(v)),
    "hostname": lambda v: len(v) <= 255 and bool(_HOSTNAME_RE.fullmatch(v)),
    "email": lambda v: bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v)),
    "duration": lambda v: bool(_DURATION_RE.fullmatch(v)),
}


def conforms(format_name: str, value: str) -> bool:
    """Whether `value` is written in `format_name`; unknown formats accept anything."""
    check = _FORMATS.get(format_name.replace("-", "").lower())
    return check is None or check(value)
