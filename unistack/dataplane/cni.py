"""The caller side of CNI, what the node agent uses the way containerd uses libcni.

``add``, ``check`` and ``delete`` run each plugin of a network config list (or a single
plugin config) as a subprocess exactly as the spec says a runtime must: the plugin binary named
by ``type`` is looked up in the ``CNI_PATH`` directories, gets ``CNI_*`` variables and the
plugin config (with the list's ``name`` and ``cniVersion`` and, after the first, the
``prevResult``) on stdin. ADD runs the list in order, DEL in reverse. A failure raises
``CniError`` with the plugin's code, message and details. The default CNI_PATH is the
directory of ``sys.executable``, where the ``unistack-cni`` console script is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from unistack.dataplane import cnierrors as errors
from unistack.dataplane.cniconf import load_conflist, write_default_conf
from unistack.dataplane.cnierrors import CniError

__all__ = ["CniError", "add", "check", "delete", "load_conflist", "write_default_conf"]

DEFAULT_TIMEOUT = 60.0


async def add(
    conf: dict[str, Any],
    container_id: str,
    netns_path: str,
    ifname: str = "eth0",
    plugin: str | None = None,
    cni_path: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """ADD the container to the network; return the final plugin's result."""
    prev: dict[str, Any] | None = None
    for plugin_conf in _plugins(conf):
        call = _Call("ADD", container_id, netns_path, ifname, plugin, cni_path, timeout)
        prev = await call.run(_with_prev(conf, plugin_conf, prev))
    if prev is None:
        raise CniError(errors.INVOKE_FAILED, "ADD: the last plugin printed no result")
    return prev


async def check(
    conf: dict[str, Any],
    container_id: str,
    netns_path: str,
    prev_result: dict[str, Any],
    ifname: str = "eth0",
    plugin: str | None = None,
    cni_path: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """CHECK that the container's networking still matches ``prev_result`` (ADD's result)."""
    for plugin_conf in _plugins(conf):
        call = _Call("CHECK", container_id, netns_path, ifname, plugin, cni_path, timeout)
        await call.run(_with_prev(conf, plugin_conf, prev_result))


async def delete(
    conf: dict[str, Any],
    container_id: str,
    netns_path: str = "",
    ifname: str = "eth0",
    prev_result: dict[str, Any] | None = None,
    plugin: str | None = None,
    cni_path: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """DEL the container from the network; succeeds when there is nothing left to delete."""
    for plugin_conf in reversed(_plugins(conf)):
        call = _Call("DEL", container_id, netns_path, ifname, plugin, cni_path, timeout)
        await call.run(_with_prev(conf, plugin_conf, prev_result))


def _plugins(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """The plugin configs of a conflist, or the config itself when it is a single plugin."""
    plugins = conf.get("plugins")
    return list(plugins) if plugins else [conf]


def _with_prev(
    conf: dict[str, Any], plugin_conf: dict[str, Any], prev: dict[str, Any] | None
) -> dict[str, Any]:
    """A plugin's stdin: its config plus the list's name and version and the prevResult."""
    merged = {**plugin_conf, "name": conf.get("name"), "cniVersion": conf.get("cniVersion")}
    if prev is not None:
        merged["prevResult"] = prev
    return merged


class _Call:
    """One command against one plugin binary."""

    def __init__(
        self,
        command: str,
        container_id: str,
        netns_path: str,
        ifname: str,
        plugin: str | None,
        cni_path: list[str] | None,
        timeout: float,
    ) -> None:
        self.command = command
        self.plugin = plugin
        self.cni_path = cni_path or [os.path.dirname(sys.executable)]
        self.timeout = timeout
        self.env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns_path,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": "",
            "CNI_PATH": os.pathsep.join(self.cni_path),
        }

    async def run(self, plugin_conf: dict[str, Any]) -> dict[str, Any] | None:
        """Exec the plugin; its decoded result (None when it printed nothing)."""
        binary = self.plugin or find_plugin(str(plugin_conf.get("type", "")), self.cni_path)
        stdout, stderr, code = await self._exec(binary, json.dumps(plugin_conf).encode())
        return _decode(self.command, stdout, stderr, code)

    async def _exec(self, binary: str, stdin: bytes) -> tuple[bytes, bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            binary,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CniError(
                errors.INVOKE_FAILED, f"{self.command} timed out after {self.timeout}s", binary
            ) from None
        return stdout, stderr, proc.returncode or 0


def find_plugin(plugin_type: str, cni_path: Sequence[str]) -> str:
    """The executable called ``plugin_type`` in the first CNI_PATH directory that has it."""
    if not plugin_type or "/" in plugin_type:
        raise CniError(errors.INVALID_CONFIG, f"invalid plugin type {plugin_type!r}")
    for directory in cni_path:
        candidate = os.path.join(directory, plugin_type)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        errors.INVOKE_FAILED, f"failed to find plugin {plugin_type!r} in path {list(cni_path)}"
    )


def _decode(command: str, stdout: bytes, stderr: bytes, code: int) -> dict[str, Any] | None:
    """The plugin's result, or its error raised as CniError."""
    try:
        output = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        output = None
        if code == 0:
            raise CniError(
                errors.INVOKE_FAILED,
                f"{command}: undecodable result",
                stdout.decode(errors="replace"),
            ) from None
    if code != 0:
        if isinstance(output, dict) and "code" in output:
            raise CniError.from_json(output)
        raise CniError(
            errors.INVOKE_FAILED,
            f"{command}: plugin exited {code}",
            stderr.decode(errors="replace").strip(),
        )
    return output if isinstance(output, dict) else None
