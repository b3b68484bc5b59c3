"""The node's CNI setup on disk: the network config and the plugin executable.

``write_default_conf`` writes the single-plugin list the agent uses (so any CNI runtime could
read the same file); ``load_conflist`` reads a ``.conflist`` (or wraps a single-plugin
``.conf``) and checks its shape. ``install_plugin`` puts the ``unistack-cni`` executable into
the agent's CNI bin directory, as a CNI DaemonSet installs its binary into /opt/cni/bin. Used
by the node agent with ``invoke``.

The installed ``unistack-cni`` is the thin plugin (``unistack.integration.cni.delegate``) run
by ``python -I -S``: it hands each call to the agent over the unix socket ``plugin_socket``
names, and runs the whole plugin itself when no agent listens. Why not point CNI_PATH at the
``unistack-cni`` console script: that Python processes ``site`` (site-packages' .pth files;
the editable install's import hook alone pulls in pathlib) and spends ~40 ms of CPU before the
plugin's first line, where ``python -I -S`` spends ~14 ms; the plugin imports only the standard
library and ``unistack`` (which the launcher puts on ``sys.path``), so skipping ``site`` loses
nothing. The console script stays, self-contained, for runtimes other than the agent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

PLUGIN_TYPE = "unistack-cni"
PLUGIN_MODULE = "unistack.integration.cni.delegate"
CNI_VERSION = "1.0.0"
# The directory that holds the ``unistack`` package (this file is unistack/dataplane/...).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def plugin_socket(cni_dir: str) -> str:
    """Where the agent serves the thin plugin's calls, under its CNI directory."""
    return os.path.join(cni_dir, "unistack-cni.sock")


def launcher(
    python: str, socket: str, module: str = PLUGIN_MODULE, package_root: str = PACKAGE_ROOT
) -> str:
    """The plugin executable's text: ``python -I -S`` running ``module.main(socket)``."""
    return (
        f"#!{python} -IS\n"
        "# unistack-cni, installed by the node agent; see unistack/dataplane/cniconf.py.\n"
        "import sys\n"
        f"sys.path.insert(0, {package_root!r})\n"
        f"from {module} import main\n"
        f"main({socket!r})\n"
    )


def install_plugin(bin_dir: str, socket: str, python: str = sys.executable) -> str:
    """Write ``<bin_dir>/unistack-cni`` unless it is there already; return ``bin_dir``."""
    text = launcher(python, socket)
    path = os.path.join(bin_dir, PLUGIN_TYPE)
    try:
        with open(path) as f:
            if f.read() == text and os.access(path, os.X_OK):
                return bin_dir
    except FileNotFoundError:
        pass
    os.makedirs(bin_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return bin_dir
