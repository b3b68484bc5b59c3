"""Volumes across hosts: a pool's volume served over NBD, and reached from another host.

A volume is a file in one host's pool (`unistack.dataplane.volumepool`). Nova reaches a
volume of another host through the transport its Cinder driver answers in the connection
info (iSCSI, RBD, NFS...) and os-brick turns it into a local path for the hypervisor. These
hosts have neither an iSCSI target nor the kernel's nbd module (REFERENCE.md), so the
transport is NBD spoken by QEMU's own userspace code, `qemu-storage-daemon`, on both ends:

- `NbdExports`, on the volume's host: one daemon per host (its QMP monitor on a unix
  socket, its NBD server on the host's address) exports each volume another host connects
  to, writable, under the volume's id. The exports are recorded (`exports.json`: the volume's
  file and the hosts connected), so a restarted agent or the next `unistack up` serves them
  again.
- `NbdConnections`, on the server's host (os-brick's role): one daemon per connected volume
  is the NBD client and exports the volume again through FUSE as a plain file,
  `<dir>/<volume id>.img`. QEMU opens that file as it opens a local volume; a system
  container gets a loop device on it, as on a local file.

The NBD traffic is TLS with a pre-shared key (`tls-creds-psk`), the key derived from the
cloud's node-proxy token that every host's agent holds, so a guest that reaches the
hosts' addresses can neither read nor write a volume. The client reconnects by itself
(`reconnect-delay`) when the volume's host restarts its daemon.

Why our own module: the daemons are QEMU's; this is only their command lines, their QMP
calls, the FUSE mount and cleanup after a crash (their processes run as
`unistack.dataplane.daemons` runs every host daemon).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unistack.dataplane import daemons, loopdev, qmp

log = logging.getLogger(__name__)
DAEMON = "qemu-storage-daemon"
PSK_USER = "unistack"
PSK_FILE = "keys.psk"
NBD_PORT = 10809  # IANA's port for NBD
PATIENCE_S = 10.0  # the volume's host may be starting too
EXPORT_END_TIMEOUT_S = 5.0
RECONNECT_DELAY_S = 30
_VOLUME_ID = frozenset("0123456789abcdefghijklmnopqrstuvwxyz-")


class NbdError(Exception):
    """A volume could not be exported or reached; the message says why."""


@dataclass(frozen=True)
class NbdTarget:
    """Where a volume is served: Cinder's connection info data for `driver_volume_type`
    `nbd` (host, port, export name)."""

    host: str
    port: int
    export: str

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "export": self.export}


def parse_target(body: Any) -> NbdTarget:
    """An `NbdTarget` from its JSON; ValueError saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("connection must be an object with host, port and export")
    host, port, export = body.get("host"), body.get("port"), body.get("export")
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        raise ValueError("connection host must be an IP address") from None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError("connection port must be a port number")
    check_volume_id(export)
    return NbdTarget(str(host), port, str(export))


def check_volume_id(volume_id: Any) -> str:
    """`volume_id` when it can name an export and a file (a UUID's characters); ValueError."""
    if not isinstance(volume_id, str) or not volume_id or not set(volume_id) <= _VOLUME_ID:
        raise ValueError(f"not a volume id: {volume_id!r}")
    return volume_id


def psk_key(token: str) -> str:
    """The NBD pre-shared key of a cloud, in hex: both ends derive it from the token."""
    return hmac.new(token.encode(), b"unistack nbd psk", hashlib.sha256).hexdigest()


def write_psk(directory: Path, token: str) -> Path:
    """`directory` holding QEMU's `keys.psk` (`user:hexkey`), readable by root only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / PSK_FILE
    text = f"{PSK_USER}:{psk_key(token)}\n"
    if not path.exists() or path.read_text() != text:
        temporary = path.with_suffix(".new")
        temporary.write_text(text)
        temporary.chmod(0o600)
        os.replace(temporary, path)
    return directory


def node_name(volume_id: str) -> str:
    """A volume's block node in the daemon (node names are at most 31 characters)."""
    return "vol" + hashlib.sha256(volume_id.encode()).hexdigest()[:24]


# --- the volume's host ---------------------------------------------------------------------


class NbdExports:
    """This host's NBD server: the volumes other hosts connect to."""

    def __init__(self, state: Path, address: str, port: int, token: str) -> None:
        self.state = state
        self.address = address
        self.port = port
        self.token = token

    @property
    def pidfile(self) -> Path:
        return self.state / "exports.pid"

    @property
    def monitor(self) -> Path:
        return self.state / "exports.qmp"

    @property
    def record(self) -> Path:
        return self.state / "exports.json"

    def recorded(self) -> dict[str, dict[str, Any]]:
        """`{volume id: {"path": file, "hosts": [host...]}}`."""
        try:
            found: dict[str, dict[str, Any]] = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return found

    def _save(self, exports: dict[str, dict[str, Any]]) -> None:
        if not exports:
            self.record.unlink(missing_ok=True)
            return
        temporary = self.record.with_suffix(".new")
        temporary.write_text(json.dumps(exports, sort_keys=True))
        os.replace(temporary, self.record)

    def target(self, volume_id: str) -> NbdTarget:
        return NbdTarget(self.address, self.port, volume_id)

    async def export(self, volume_id: str, path: Path, host: str) -> NbdTarget:
        """The volume served to `host` (idempotent); where to connect."""
        check_volume_id(volume_id)
        exports = self.recorded()
        entry = exports.setdefault(volume_id, {"path": str(path), "hosts": []})
        entry["path"] = str(path)
        if host not in entry["hosts"]:
            entry["hosts"].append(host)
        self.state.mkdir(parents=True, exist_ok=True)
        self._save(exports)
        await self._serve(exports)
        return self.target(volume_id)

    async def unexport(self, volume_id: str, host: str | None = None) -> None:
        """`host` no longer connects (None: no host does); the export goes with the last."""
        exports = self.recorded()
        entry = exports.get(volume_id)
        if entry is None:
            return
        entry["hosts"] = [known for known in entry["hosts"] if host is not None and known != host]
        if entry["hosts"]:
            self._save(exports)
            return
        del exports[volume_id]
        self._save(exports)
        if not exports:
            self.stop()
        elif daemons.running_pid(self.pidfile, str(self.monitor)) is not None:
            await self._remove(volume_id)

    async def reconcile(self) -> None:
        """The recorded exports served (after an agent restart or `unistack up`)."""
        exports = self.recorded()
        if exports:
            await self._serve(exports)

    def stop(self) -> None:
        """The daemon ended (`unistack down`); the records stay for the next `up`."""
        pid = daemons.running_pid(self.pidfile, str(self.monitor))
        if pid is not None:
            daemons.stop(pid)
        self.pidfile.unlink(missing_ok=True)
        self.monitor.unlink(missing_ok=True)

    async def _serve(self, exports: dict[str, dict[str, Any]]) -> None:
        """The daemon running with every export in `exports`."""
        if daemons.running_pid(self.pidfile, str(self.monitor)) is None:
            self._start()
        try:
            async with qmp.connect(self.monitor) as monitor:
                served = {item["id"] for item in await monitor.execute("query-block-exports")}
                nodes = {
                    item["node-name"] for item in await monitor.execute("query-named-block-nodes")
                }
                for volume_id, entry in exports.items():
                    node = node_name(volume_id)
                    if node not in nodes:
                        await monitor.execute("blockdev-add", _raw_node(node, entry["path"]))
                    if node not in served:
                        await monitor.execute(
                            "block-export-add",
                            {"type": "nbd", "id": node, "node-name": node, "name": volume_id,
                             "writable": True},
                        )  # fmt: skip
        except qmp.QmpError as error:
            raise NbdError(f"cannot export: {error}") from None

    def _ready(self, pid: int) -> bool:
        """The daemon listens on its monitor and wrote its pid file."""
        marker = str(self.monitor)
        return self.monitor.exists() and daemons.running_pid(self.pidfile, marker) == pid

    async def _remove(self, volume_id: str) -> None:
        node = node_name(volume_id)
        try:
            async with qmp.connect(self.monitor) as monitor:
                with monitor.events(["BLOCK_EXPORT_DELETED"]) as events:
                    try:
                        await monitor.execute("block-export-del", {"id": node, "mode": "hard"})
                    except qmp.QmpError as error:
                        if "not found" not in str(error).lower():
                            raise
                    else:
                        await monitor.next_event(events, EXPORT_END_TIMEOUT_S, {"id": node})
                with contextlib.suppress(qmp.QmpError):
                    await monitor.execute("blockdev-del", {"node-name": node})
        except qmp.QmpError as error:
            raise NbdError(f"cannot end the export of {volume_id}: {error}") from None

    def _start(self) -> None:
        self.monitor.unlink(missing_ok=True)
        psk = write_psk(self.state / "psk", self.token)
        argv = [
            DAEMON,
            "--object", f"tls-creds-psk,id=tls0,dir={psk},endpoint=server",
            "--chardev", f"socket,id=monitor,path={self.monitor},server=on,wait=off",
            "--monitor", "chardev=monitor,mode=control",
            "--nbd-server",
            f"addr.type=inet,addr.host={self.address},addr.port={self.port},tls-creds=tls0",
            "--pidfile", str(self.pidfile),
        ]  # fmt: skip
        try:
            daemons.start(argv, self.state / "exports.log", self._ready)
        except daemons.StartError as error:
            raise NbdError(f"{DAEMON}: {error}") from None


def _raw_node(node: str, path: str) -> dict[str, Any]:
    # share the file with a VM of this host that has the same (multiattach) volume open
    file = {"driver": "file", "filename": path, "locking": "off"}
    return {"driver": "raw", "node-name": node, "file": file}


# --- the server's host ---------------------------------------------------------------------


class NbdConnections:
    """Volumes of other hosts connected here, each a file under `state`."""

    def __init__(self, state: Path, token: str) -> None:
        self.state = state
        self.token = token

    def path(self, volume_id: str) -> Path:
        return self.state / f"{check_volume_id(volume_id)}.img"

    def _pidfile(self, volume_id: str) -> Path:
        return self.state / f"{volume_id}.pid"

    def connected(self) -> list[str]:
        """The volumes whose connection runs here."""
        if not self.state.is_dir():
            return []
        return sorted(
            pidfile.stem
            for pidfile in self.state.glob("*.pid")
            if daemons.running_pid(pidfile, str(self.path(pidfile.stem))) is not None
        )

    def connect(self, volume_id: str, target: NbdTarget, patience: float = PATIENCE_S) -> Path:
        """The volume as a local file (idempotent); NbdError when its host cannot be
        reached, tried again for `patience` seconds (the volume's host may be starting too)."""
        path, pidfile = self.path(volume_id), self._pidfile(volume_id)

        def ready(pid: int) -> bool:  # the FUSE mount made and the pid file written
            return _mounted(path) and daemons.running_pid(pidfile, str(path)) == pid

        running = daemons.running_pid(pidfile, str(path))
        if running is not None and ready(running):
            return path
        self.disconnect(volume_id)
        self.state.mkdir(parents=True, exist_ok=True)
        psk = write_psk(self.state / "psk", self.token)
        path.touch()
        server = (
            f"server.type=inet,server.host={target.host},server.port={target.port},"
            f"export={target.export},tls-creds=tls0,reconnect-delay={RECONNECT_DELAY_S}"
        )
        argv = [
            DAEMON,
            "--object", f"tls-creds-psk,id=tls0,dir={psk},endpoint=client,username={PSK_USER}",
            "--blockdev", f"driver=nbd,node-name=remote,{server}",
            "--export", f"type=fuse,id=local,node-name=remote,mountpoint={path},writable=on",
            "--pidfile", str(pidfile),
        ]  # fmt: skip
        deadline = time.monotonic() + patience
        while True:
            try:
                daemons.start(argv, self.state / f"{volume_id}.log", ready)
                return path
            except daemons.StartError as error:
                if time.monotonic() > deadline:
                    path.unlink(missing_ok=True)
                    raise NbdError(
                        f"volume {volume_id} at {target.host}:{target.port}: {error}"
                    ) from None
                time.sleep(0.5)

    def disconnect(self, volume_id: str) -> None:
        """The connection ended and its file gone (loop devices on it released first)."""
        path = self.path(volume_id)
        for device, _ in loopdev.loops_backed_by(path):
            with contextlib.suppress(OSError):
                loopdev.detach_loop(device)
        pid = daemons.running_pid(self._pidfile(volume_id), str(path))
        if pid is not None:
            daemons.stop(pid)
        if _mounted(path):
            with contextlib.suppress(OSError):
                loopdev.unmount(path, lazy=True)
        self._pidfile(volume_id).unlink(missing_ok=True)
        (self.state / f"{volume_id}.log").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def cleanup(self) -> list[str]:
        """Every connection ended, even of a crashed agent (`unistack down`)."""
        names = {p.stem for p in self.state.glob("*.pid")} | {
            p.stem for p in self.state.glob("*.img")
        }
        for volume_id in sorted(names):
            with contextlib.suppress(ValueError):
                self.disconnect(volume_id)
        return sorted(names)


def _mounted(path: Path) -> bool:
    return any(mount.target == path for mount in _mounts())


def _mounts() -> Iterator[loopdev.Mount]:
    try:
        yield from loopdev.mounts()
    except OSError:
        return
