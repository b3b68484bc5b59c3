"""The ClusterRole aggregation controller: an aggregated ClusterRole holds the rules of the
ClusterRoles its `aggregationRule.clusterRoleSelectors` select.

Why a controller, and here: upstream's is one (kube-controller-manager's
clusterrole-aggregation), and the rules it writes into the object are what every reader sees —
the API server's RBAC authorizer and escalation check, `kubectl get clusterrole edit -o yaml`,
`kubectl auth can-i --list` — so the authorizer stays a plain reader of stored roles, and a
Helm chart's role labelled `rbac.authorization.k8s.io/aggregate-to-edit: "true"` extends `edit`
(and through it `admin`) as it would on Kubernetes. Resolving aggregation inside the
authorizer instead would grant rules the stored object does not show. The price is a moment,
after the API server bootstraps `admin`, `edit` and `view` or after a change, before the
controller has filled them.

Any ClusterRole's change queues every aggregated ClusterRole (key: its name): a label change
can move any role in or out of any selection, and an aggregated role that changes wakes those
that aggregate it (`view` → `edit` → `admin`). `aggregated_rules` (pure) is the union,
selector by selector and the roles of each by name, without repeats; the controller writes
a role whose rules differ with a compare-and-swap update (a lost race is retried by the
queue). Selectors are `kube.labels`'s, upstream's: an empty one selects every ClusterRole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unistack.client.api import Client
from unistack.client.resources import CLUSTERROLES
from unistack.kube.labels import labels_of, selector_matches
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import SharedInformers, copy_object
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]


# --- decisions (pure) -------------------------------------------------------------------------


def selectors_of(role: Obj) -> list[Obj]:
    """The role's clusterRoleSelectors; [] when it does not aggregate."""
    rule = role.get("aggregationRule")
    if not isinstance(rule, dict):
        return []
    return [s for s in rule.get("clusterRoleSelectors") or [] if isinstance(s, dict)]


def aggregated_rules(role: Obj, roles: Iterable[Obj]) -> list[Obj]:
    """The rules of every other ClusterRole a selector of `role` selects — selector by
    selector, the roles of each by name, as upstream — once each. An empty selector
    selects every ClusterRole."""
    name = role["metadata"]["name"]
    others = sorted(
        (r for r in roles if r["metadata"]["name"] != name),
        key=lambda r: str(r["metadata"]["name"]),
    )
    rules: list[Obj] = []
    for selector in selectors_of(role):
        for other in others:
            if selector_matches(selector, labels_of(other)):
                rules += [r for r in other.get("rules") or [] if r not in rules]
    return rules


def needs_update(role: Obj, rules: list[Obj]) -> bool:
    return (role.get("rules") or []) != rules


# --- the controller ---------------------------------------------------------------------------


class ClusterRoleAggregationController:
    """Watches ClusterRoles; keeps each aggregated one's rules the union of those it selects."""

    def __init__(self, client: Client, *, informers: SharedInformers | None = None) -> None:
        self.client = client
        self.roles = (informers or SharedInformers(client)).informer(CLUSTERROLES)
        self.queue = WorkQueue("clusterrole-aggregation")
        self.controller = Controller("clusterrole-aggregation", self.queue, self.reconcile)
        self.roles.add_handlers(
            on_add=self._wake_aggregated,
            on_update=lambda old, new: self._wake_aggregated(new),
            on_delete=self._wake_aggregated,
        )

    def _wake_aggregated(self, changed: Obj) -> None:
        for role in self.roles.cache.list():
            if selectors_of(role):
                self.queue.add(role["metadata"]["name"])

    async def run(self) -> None:
        await run_with_informers(self.controller, self.roles)

    async def reconcile(self, name: str) -> float | None:
        role = self.roles.cache.get(name)
        if role is None or not selectors_of(role):
            return None
        rules = aggregated_rules(role, self.roles.cache.list())
        if needs_update(role, rules):
            updated = copy_object(role)
            updated["rules"] = rules
            await self.client.update(CLUSTERROLES, updated)
        return None
