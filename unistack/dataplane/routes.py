"""Routes to other nodes' pod CIDRs, in the host's main table, tagged as ours.

Every route we install carries ``proto 199`` (``unistack``), so a sync reads back only our
routes and never touches the ones a human or another daemon added. ``plan_route_changes`` is the
pure decision (desired, observed -> changes); ``sync_pod_routes`` reads, decides and applies the
changes in one ``ip -batch -`` exec. Used by the node agent when Nodes' podCIDRs change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from unistack.dataplane import iproute

UNISTACK_PROTO = 199


@dataclass(frozen=True)
class RouteChange:
    """Replace (add or move) or delete the route to ``dst``."""

    action: Literal["replace", "delete"]
    dst: str
    via: str | None = None


class PodRoutes(Protocol):
    """Keeps the node's routes to remote pod CIDRs equal to a desired map."""

    def sync(self, desired: Mapping[str, str]) -> list[RouteChange]: ...


def normalise(cidr: str) -> str:
    """A canonical CIDR string (``10.1.2.3`` -> ``10.1.2.3/32``); raises ValueError."""
    return str(ipaddress.ip_network(cidr, strict=False))


def plan_route_changes(
    desired: Mapping[str, str], observed: Mapping[str, str]
) -> list[RouteChange]:
    """What to do so that ``observed`` ({cidr: via}) becomes ``desired``; sorted, minimal."""
    want = {normalise(dst): via for dst, via in desired.items()}
    have = {normalise(dst): via for dst, via in observed.items()}
    changes = [RouteChange("delete", dst, via) for dst, via in have.items() if dst not in want]
    changes += [
        RouteChange("replace", dst, via) for dst, via in want.items() if have.get(dst) != via
    ]
    return sorted(changes, key=lambda change: (change.action, change.dst))


def parse_observed(routes: list[dict[str, Any]]) -> dict[str, str]:
    """``{cidr: via}`` from ``ip -j route show`` output (routes without a gateway skipped)."""
    return {normalise(r["dst"]): r["gateway"] for r in routes if r.get("gateway")}


def change_line(change: RouteChange, proto: int) -> str:
    """The ``ip -batch`` line applying ``change``."""
    if change.action == "delete":
        return f"route delete {change.dst} proto {proto}"
    return f"route replace {change.dst} via {change.via} proto {proto}"


class LinuxPodRoutes:
    """PodRoutes with iproute2, in the host or (for tests) in a named netns."""

    def __init__(self, proto: int = UNISTACK_PROTO, netns: str | None = None) -> None:
        self.proto = proto
        self.netns = netns

    def observed(self) -> dict[str, str]:
        """Our routes as they are now."""
        found: dict[str, str] = {}
        for family in ("-4", "-6"):
            routes = iproute.ip_json(
                family, "route", "show", "proto", str(self.proto), netns=self.netns
            )
            found.update(parse_observed(routes))
        return found

    def sync(
        self, desired: Mapping[str, str], owned: Iterable[str] | None = None
    ) -> list[RouteChange]:
        """Make our routes equal ``desired`` ({pod CIDR: node IP}); return what changed.
        With ``owned``, only routes to those CIDRs (and the desired ones) are ours to change:
        another cluster's agent on this host keeps its own."""
        observed = self.observed()
        if owned is not None:
            mine = {normalise(cidr) for cidr in [*owned, *desired]}
            observed = {dst: via for dst, via in observed.items() if dst in mine}
        changes = plan_route_changes(desired, observed)
        try:
            iproute.ip_batch([change_line(c, self.proto) for c in changes], netns=self.netns)
        except iproute.CommandError:
            return self._one_by_one(changes)
        return changes

    def _one_by_one(self, changes: list[RouteChange]) -> list[RouteChange]:
        """After a failed batch, each change alone: one node's unreachable address (a host
        that is gone) must not keep the routes to every other node out. The changes made;
        the first failure raised once the rest are in."""
        made, failed = [], None
        for change in changes:
            try:
                iproute.ip_batch([change_line(change, self.proto)], netns=self.netns)
                made.append(change)
            except iproute.CommandError as error:
                failed = failed or error
        if failed is not None:
            raise PartialSync(made, failed)
        return made


class PartialSync(Exception):
    """Some route changes failed: `made` went in, `error` is the first failure."""

    def __init__(self, made: list[RouteChange], error: Exception) -> None:
        super().__init__(f"{len(made)} route changes made; then {error}")
        self.made = made
        self.error = error


def sync_pod_routes(
    desired: Mapping[str, str], proto: int = UNISTACK_PROTO, netns: str | None = None
) -> list[RouteChange]:
    """One-shot ``LinuxPodRoutes(proto, netns).sync(desired)``."""
    return LinuxPodRoutes(proto, netns).sync(desired)
