"""Routes to the other nodes' pods: each Node's podCIDR via its InternalIP, in the host's table.

The route controller's role in a cluster without an overlay (kube-controller-manager's route
controller, flannel's host-gw backend): every agent watches Nodes and keeps one route per other
node, `podCIDR via InternalIP`, tagged `proto 199` (`unistack.dataplane.routes`). Several
unistack clusters may share one host, so an agent touches only the routes it installed: it
records them in `<agent root>/routes.json`, written before the routes change, and removes a
route when its node goes away, its podCIDR moves, or at `unistack down` (`remove_recorded`).
A node whose InternalIP is this host's own address (another agent in the same network
namespace) needs no route. Routes outlive an agent restart, as the kernel keeps them; the next
sync starts from what is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from unistack.client.api import Client
from unistack.client.resources import NODES
from unistack.dataplane.routes import LinuxPodRoutes, PartialSync, RouteChange, normalise
from unistack.runtime.informer import Informer

Obj = dict[str, Any]
RECORD = "routes.json"
PARTIAL_RETRY_S = 10.0  # a node whose address cannot be reached: tried again this often

log = logging.getLogger(__name__)


def desired_routes(nodes: Iterable[Obj], own_name: str, own_address: str) -> dict[str, str]:
    """{pod CIDR: InternalIP} for every other node that has both (first address family
    match: an IPv4 CIDR goes via an IPv4 address)."""
    wanted: dict[str, str] = {}
    for node in nodes:
        if node.get("metadata", {}).get("name") == own_name:
            continue
        spec, status = node.get("spec") or {}, node.get("status") or {}
        addresses = [
            a.get("address", "")
            for a in status.get("addresses") or []
            if a.get("type") == "InternalIP"
        ]
        for cidr in spec.get("podCIDRs") or [spec.get("podCIDR")]:
            if not cidr:
                continue
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            via = next((a for a in addresses if _family(a) == network.version), None)
            if via is not None and via != own_address:
                wanted[str(network)] = via
    return wanted


def _family(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


class RouteRecord:
    """The pod CIDRs this agent has routes for, kept in a file across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> set[str]:
        try:
            return {normalise(cidr) for cidr in orjson.loads(self.path.read_bytes())}
        except (FileNotFoundError, orjson.JSONDecodeError, TypeError, ValueError):
            return set()

    def save(self, cidrs: Iterable[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_bytes(orjson.dumps(sorted(cidrs)))
        os.replace(temporary, self.path)


class NodeRoutes:
    """Keeps this host's routes to other nodes' pod CIDRs equal to what the Nodes say."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        address: str,
        root: Path,
        routes: LinuxPodRoutes | None = None,
        *,
        coalesce_delay: float = 0.05,
        retry_delay: float = 1.0,
    ) -> None:
        self.node_name = node_name
        self.address = address
        self.record = RouteRecord(root / RECORD)
        self.routes = routes or LinuxPodRoutes()
        self.nodes = Informer(client, NODES)
        self.coalesce_delay = coalesce_delay
        self.retry_delay = retry_delay
        self._dirty = asyncio.Event()
        self._applied: dict[str, str] | None = None  # what the last successful sync made
        self.nodes.add_handlers(
            on_add=lambda _: self._dirty.set(),
            on_update=lambda _old, _new: self._dirty.set(),
            on_delete=lambda _: self._dirty.set(),
        )

    def sync(self) -> list[RouteChange]:
        """Make this agent's routes what the Nodes call for; return what changed. Node
        updates that change no route (heartbeats, conditions) cost no `ip` call."""
        desired = desired_routes(self.nodes.cache.list(), self.node_name, self.address)
        if desired == self._applied:
            return []
        recorded = self.record.load()
        self.record.save(recorded | set(desired))  # before: a crash leaves nothing unrecorded
        changes = self.routes.sync(desired, owned=recorded)
        self.record.save(desired)
        self._applied = desired
        for change in changes:
            log.info("node routes: %s %s via %s", change.action, change.dst, change.via)
        return changes

    async def run(self) -> None:
        task = self.nodes.start()
        try:
            await self.nodes.wait_synced()
            self._dirty.set()
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self.coalesce_delay)
                self._dirty.clear()
                try:
                    await asyncio.to_thread(self.sync)
                except PartialSync as partial:  # a node's address unreachable: the rest are in
                    for change in partial.made:
                        log.info("node routes: %s %s via %s", change.action, change.dst, change.via)
                    log.warning("node routes: %s", partial.error)
                    await asyncio.sleep(max(self.retry_delay, PARTIAL_RETRY_S))
                    self._dirty.set()
                except Exception:  # iproute2 failed: logged, retried
                    log.exception("node routes: sync failed")
                    await asyncio.sleep(self.retry_delay)
                    self._dirty.set()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def remove_recorded(root: Path, routes: LinuxPodRoutes | None = None) -> list[RouteChange]:
    """Delete the routes an agent recorded under `root` (for `unistack down`)."""
    record = RouteRecord(root / RECORD)
    owned = record.load()
    if not owned:
        return []
    changes = (routes or LinuxPodRoutes()).sync({}, owned=owned)
    record.path.unlink(missing_ok=True)
    return changes
