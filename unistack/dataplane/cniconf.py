"""The node's CNI network config as a standard ``.conflist`` file on disk.

``write_default_conf`` writes the single-plugin list the agent uses (so any CNI runtime could
read the same file); ``load_conflist`` reads a ``.conflist`` (or wraps a single-plugin
``.conf``) and checks its shape. Used by the node agent with ``invoke``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

PLUGIN_TYPE = "unistack-cni"
CNI_VERSION = "1.0.0"


def default_conflist(
    name: str,
    bridge: str,
    subnet: str,
    gateway: str,
    cluster_cidr: str,
    data_dir: str,
    dns: dict[str, Any] | None = None,
    mtu: int | None = None,
) -> dict[str, Any]:
    """The conflist for pods on ``bridge`` with addresses from ``subnet``."""
    plugin: dict[str, Any] = {
        "type": PLUGIN_TYPE,
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "clusterCIDR": cluster_cidr,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet, "gateway": gateway}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir,
        },
    }
    if mtu:
        plugin["mtu"] = mtu
    if dns:
        plugin["dns"] = dns
    return {"cniVersion": CNI_VERSION, "name": name, "plugins": [plugin]}


def write_default_conf(
    conf_dir: str,
    name: str,
    bridge: str,
    subnet: str,
    gateway: str,
    cluster_cidr: str,
    data_dir: str,
    dns: dict[str, Any] | None = None,
    mtu: int | None = None,
) -> str:
    """Write ``<conf_dir>/10-<name>.conflist`` atomically; return its path."""
    conf = default_conflist(name, bridge, subnet, gateway, cluster_cidr, data_dir, dns, mtu)
    os.makedirs(conf_dir, exist_ok=True)
    path = os.path.join(conf_dir, f"10-{name}.conflist")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def load_conflist(path: str) -> dict[str, Any]:
    """Read a ``.conflist`` (a ``.conf`` becomes a one-plugin list); ValueError if malformed."""
    with open(path) as f:
        conf = json.load(f)
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: not a JSON object")
    if "plugins" not in conf and "type" in conf:
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conf = {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), "plugins": [plugin]}
    _check(conf, path)
    return conf


def _check(conf: dict[str, Any], path: str) -> None:
    for key in ("cniVersion", "name"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise ValueError(f"{path}: {key} must be a non-empty string")
    plugins: Sequence[Any] = conf.get("plugins") or []
    if not plugins or not all(isinstance(p, dict) and p.get("type") for p in plugins):
        raise ValueError(f"{path}: plugins must be a non-empty list of objects with a type")
