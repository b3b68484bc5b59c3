"""Decode what a CNI runtime hands the plugin: environment variables and network config.

``parse_env`` checks the ``CNI_*`` variables per command (code 4 when wrong); ``parse_conf``
turns the stdin JSON into a typed ``NetConf`` (code 6 for bad JSON, 7 for a bad config, 1 for
an unsupported ``cniVersion``). Pure; used by ``plugin``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from unistack.dataplane import bridge, ipam
from unistack.dataplane import cnierrors as errors
from unistack.dataplane.cnierrors import CniError

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
DEFAULT_BRIDGE = "unistack0"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LINK_NAME = re.compile(r"^[^\s/:]{1,15}$")


class Env(NamedTuple):
    """The ``CNI_*`` environment of one plugin exec."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: str = ""


class NetConf(NamedTuple):
    """The bridge + host-local network config this plugin understands."""

    cni_version: str
    name: str
    type: str
    bridge_name: str
    is_gateway: bool
    is_default_gateway: bool
    ip_masq: bool
    mtu: int | None
    hairpin: bool
    cluster_cidrs: tuple[str, ...]
    range_sets: tuple[ipam.RangeSet, ...]
    routes: tuple[bridge.Route, ...]
    data_dir: str
    dns: dict[str, Any]
    prev_result: dict[str, Any] | None


def parse_env(environ: Mapping[str, str]) -> Env:
    """Read and check the variables ``CNI_COMMAND`` needs; raise CniError(4) when wrong."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise _env_error(f"unknown CNI_COMMAND {command!r}" if command else "CNI_COMMAND missing")
    if command == "VERSION":
        return Env(command)
    env = Env(
        command,
        environ.get("CNI_CONTAINERID", ""),
        environ.get("CNI_NETNS", ""),
        environ.get("CNI_IFNAME", ""),
        environ.get("CNI_ARGS", ""),
        environ.get("CNI_PATH", ""),
    )
    _check_env(env)
    return env


def _check_env(env: Env) -> None:
    if not _CONTAINER_ID.match(env.container_id):
        raise _env_error("CNI_CONTAINERID missing or invalid")
    if not _LINK_NAME.match(env.ifname) or env.ifname in (".", ".."):
        raise _env_error("CNI_IFNAME missing or invalid")
    if env.command != "DEL" and not env.netns:
        raise _env_error("CNI_NETNS missing")
    if not env.path:
        raise _env_error("CNI_PATH missing")


def _env_error(msg: str) -> CniError:
    return CniError(errors.INVALID_ENVIRONMENT, msg)


def decode(stdin: bytes) -> dict[str, Any]:
    """The stdin JSON object; CniError(6) if it is not one."""
    try:
        data = json.loads(stdin)
    except ValueError as e:
        raise CniError(errors.DECODE_FAILURE, "cannot decode network config", str(e)) from None
    if not isinstance(data, dict):
        raise CniError(errors.DECODE_FAILURE, "network config is not a JSON object")
    return data


def check_version(data: Mapping[str, Any]) -> str:
    """The config's ``cniVersion`` if supported; CniError(1) otherwise."""
    version = data.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    return str(version)


def parse_conf(stdin: bytes) -> NetConf:
    """Decode and validate the network config."""
    data = decode(stdin)
    version = check_version(data)
    try:
        return _net_conf(data, version)
    except (KeyError, TypeError, ValueError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise CniError(errors.INVALID_CONFIG, "invalid network config", detail) from None


def _net_conf(data: Mapping[str, Any], version: str) -> NetConf:
    name = _string(data, "name")
    ipam_conf = data.get("ipam") or {}
    if ipam_conf.get("type") != "host-local":
        raise ValueError("ipam.type must be host-local")
    range_sets = tuple(ipam.RangeSet.from_config(rs) for rs in _ranges(ipam_conf))
    bridge_name = str(data.get("bridge") or DEFAULT_BRIDGE)
    if not _LINK_NAME.match(bridge_name):
        raise ValueError(f"invalid bridge name {bridge_name!r}")
    subnets = [str(r.subnet) for rs in range_sets for r in rs.ranges]
    return NetConf(
        cni_version=version,
        name=name,
        type=_string(data, "type"),
        bridge_name=bridge_name,
        is_gateway=bool(data.get("isGateway") or data.get("isDefaultGateway")),
        is_default_gateway=bool(data.get("isDefaultGateway")),
        ip_masq=bool(data.get("ipMasq")),
        mtu=_mtu(data.get("mtu")),
        hairpin=bool(data.get("hairpinMode", True)),
        cluster_cidrs=_cidrs(data.get("clusterCIDR")) or tuple(subnets),
        range_sets=range_sets,
        routes=tuple(_route(r) for r in ipam_conf.get("routes") or []),
        data_dir=str(ipam_conf.get("dataDir") or DEFAULT_DATA_DIR),
        dns=dict(data.get("dns") or {}),
        prev_result=data.get("prevResult"),
    )


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _ranges(ipam_conf: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """``ranges``, or the legacy single ``subnet`` form as one range set."""
    if ipam_conf.get("ranges"):
        return list(ipam_conf["ranges"])
    if ipam_conf.get("subnet"):
        keys = ("subnet", "rangeStart", "rangeEnd", "gateway")
        return [[{k: ipam_conf[k] for k in keys if k in ipam_conf}]]
    raise ValueError("ipam.ranges is required")


def _mtu(value: Any) -> int | None:
    if value in (None, 0):
        return None
    if not isinstance(value, int) or not 68 <= value <= 65535:
        raise ValueError(f"mtu {value!r} out of range")
    return value


def _cidrs(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return tuple(ipam.normalise_cidr(str(item).strip()) for item in items if str(item).strip())


def _route(entry: Mapping[str, Any]) -> bridge.Route:
    gw = entry.get("gw")
    ipam.normalise_cidr(str(entry["dst"]))
    return bridge.Route(str(entry["dst"]), str(gw) if gw else None)
