"""The EndpointSlice controller, and `EndpointsController`, which runs it beside Endpoints.

For each Service with a selector the pure `decide_slices` turns the pods it selects into
`discovery.k8s.io/v1` EndpointSlices as kube-controller-manager's endpointslice controller
does: one IPv4 slice per set of ports (one slice in the usual case where every pod serves the
same ports, an empty placeholder when no pod does), named `<service>-<random>` by
generateName, labelled `kubernetes.io/service-name` and `endpointslice.kubernetes.io/
managed-by`, and controlled by the Service so that the garbage collector removes them with it.
Each endpoint carries `conditions` {ready, serving, terminating}: pods being deleted stay, as
terminating and not ready. Slices not owned by the current Service, or surplus, are deleted.

`EndpointsController` observes (informers on Services, Pods, Endpoints and EndpointSlices,
built on `unistack.runtime`; a pod's event wakes the Services whose selector matches its old
or new labels) and acts for both `decide_endpoints` (`unistack.kube.endpoints`) and
`decide_slices`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unistack.client.api import AlreadyExists, Client, Conflict, NotFound
from unistack.client.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from unistack.kube import endpoints as eps
from unistack.kube.replicaset import is_ready, is_terminating, labels_of, owned_by, owner_reference
from unistack.runtime import events
from unistack.runtime.controller import Controller, enqueue_objects, run_with_informers
from unistack.runtime.informer import (
    IndexFunc,
    Informer,
    SharedInformers,
    namespace_index,
    object_key,
)
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
PENDING_TIMEOUT = 10.0
PENDING_POLL = 0.1


# --- decisions (pure) -------------------------------------------------------------------------


def slice_endpoint(service: Obj, pod: Obj) -> Obj:
    """The pod as an EndpointSlice endpoint, with kube's ready/serving/terminating."""
    serving, terminating = is_ready(pod), is_terminating(pod)
    ready = eps.publishes_not_ready(service) or (serving and not terminating)
    endpoint: Obj = {
        "addresses": [eps.pod_ip(pod)],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    if hostname := eps.pod_hostname(service, pod):
        endpoint["hostname"] = hostname
    if node := (pod.get("spec") or {}).get("nodeName"):
        endpoint["nodeName"] = node
    endpoint["targetRef"] = eps.target_ref(pod)
    return endpoint


def slice_port(port: eps.EndpointPort) -> Obj:
    written: Obj = {"name": port.name, "port": port.port, "protocol": port.protocol}
    if port.app_protocol:
        written["appProtocol"] = port.app_protocol
    return written


Ports = tuple[eps.EndpointPort, ...]


def endpoints_by_ports(service: Obj, pods: Iterable[Obj]) -> dict[Ports, list[Obj]]:
    """The IPv4 endpoints grouped by the ports they serve; a placeholder group when none."""
    groups: dict[Ports, list[Obj]] = {}
    for pod in eps.selected_pods(service, pods, include_terminating=True):
        if ":" not in eps.pod_ip(pod):
            ports = eps.pod_ports(service, pod)
            groups.setdefault(ports, []).append(slice_endpoint(service, pod))
    for endpoints in groups.values():
        endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
    return groups or {(): []}


def slice_labels(service: Obj) -> dict[str, str]:
    labels = {k: v for k, v in labels_of(service).items() if k not in (SERVICE_NAME, MANAGED_BY)}
    if eps.is_headless(service):
        labels[eps.HEADLESS_LABEL] = ""
    return {**labels, SERVICE_NAME: service["metadata"]["name"], MANAGED_BY: CONTROLLER_NAME}


def new_slice(service: Obj, ports: Ports, endpoints: list[Obj]) -> Obj:
    meta = service["metadata"]
    owner = owner_reference({**service, "apiVersion": "v1", "kind": "Service"})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{meta['name']}-",
            "namespace": meta.get("namespace"),
            "labels": slice_labels(service),
            "ownerReferences": [owner],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [slice_port(p) for p in ports],
    }


def slice_ports_key(endpoint_slice: Obj) -> Ports:
    ports = [
        eps.EndpointPort(p.get("name") or "", int(p.get("port") or 0),
                         p.get("protocol") or "TCP", p.get("appProtocol") or "")
        for p in endpoint_slice.get("ports") or []
    ]  # fmt: skip
    return tuple(sorted(ports))


@dataclass(frozen=True, slots=True)
class CreateSlice:
    endpoint_slice: Obj


@dataclass(frozen=True, slots=True)
class UpdateSlice:
    endpoint_slice: Obj  # with the current metadata (resourceVersion: compare-and-swap)


@dataclass(frozen=True, slots=True)
class DeleteSlice:
    name: str


SliceAction = CreateSlice | UpdateSlice | DeleteSlice


def _slice_changed(current: Obj, desired: Obj) -> bool:
    fields = ("endpoints", "ports", "addressType")
    return labels_of(current) != labels_of(desired) or any(
        (current.get(f) or []) != (desired.get(f) or []) for f in fields
    )


def _updated(current: Obj, desired: Obj) -> Obj:
    metadata = {**current["metadata"], "labels": desired["metadata"]["labels"]}
    return {**desired, "metadata": metadata}


def decide_slices(service: Obj, pods: Iterable[Obj], existing: Iterable[Obj]) -> list[SliceAction]:
    """What to do with a Service's slices, given the pods and the slices labelled for it."""
    if not eps.service_selector(service):
        return []
    uid = service["metadata"].get("uid", "")
    wanted = endpoints_by_ports(service, pods)
    kept: dict[Ports, Obj] = {}
    actions: list[SliceAction] = []
    for current in sorted(existing, key=lambda s: str(s["metadata"]["name"])):
        key = slice_ports_key(current)
        if not owned_by(current, uid) or key not in wanted or key in kept:
            actions.append(DeleteSlice(current["metadata"]["name"]))
        else:
            kept[key] = current
    for ports, endpoints in sorted(wanted.items()):
        desired = new_slice(service, ports, endpoints)
        kept_slice = kept.get(ports)
        if kept_slice is None:
            actions.append(CreateSlice(desired))
        elif _slice_changed(kept_slice, desired):
            actions.append(UpdateSlice(_updated(kept_slice, desired)))
    return actions


# --- the controller ---------------------------------------------------------------------------


def service_key_of_slice(endpoint_slice: Obj) -> list[str]:
    """Index function: the `namespace/name` of the Service a managed slice belongs to."""
    meta = endpoint_slice.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != CONTROLLER_NAME or not labels.get(SERVICE_NAME):
        return []
    return [f"{meta.get('namespace')}/{labels[SERVICE_NAME]}"]


@dataclass(slots=True)
class PendingSlices:
    """Slices one sync created that the informer has not reported yet."""

    names: set[str]
    deadline: float


class EndpointsController:
    """Watches Services, Pods, Endpoints and EndpointSlices; writes each selector Service's
    Endpoints and EndpointSlices."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        by_namespace: dict[str, IndexFunc] = {"namespace": namespace_index}
        self.services = shared.informer(SERVICES, indexers=by_namespace)
        self.pods = shared.informer(PODS, indexers=by_namespace)
        self.endpoints = shared.informer(ENDPOINTS)
        self.slices = shared.informer(ENDPOINTSLICES, indexers={"service": service_key_of_slice})
        self.queue = WorkQueue("endpoints")
        self.controller = Controller("endpoints", self.queue, self.reconcile, workers)
        self.pending: dict[str, PendingSlices] = {}
        enqueue_objects(self.services, self.queue)
        enqueue_objects(self.endpoints, self.queue)  # an Endpoints' key is its Service's
        self.slices.add_handlers(
            on_add=self._wake_slice_service,
            on_update=lambda old, new: self._wake_slice_service(new),
            on_delete=self._wake_slice_service,
        )
        self.pods.add_handlers(
            on_add=self._wake_selecting,
            on_update=self._wake_on_pod_change,
            on_delete=self._wake_selecting,
        )

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.services, self.pods, self.endpoints, self.slices)

    def _wake_slice_service(self, endpoint_slice: Obj) -> None:
        for key in service_key_of_slice(endpoint_slice):
            self.queue.add(key)

    def _wake_selecting(self, pod: Obj) -> None:
        """Queue the Services whose selector matches the pod."""
        namespace = pod["metadata"].get("namespace", "")
        for service in self.services.cache.by_index("namespace", namespace):
            if eps.service_selects(service, pod):
                self.queue.add(object_key(service))

    def _wake_on_pod_change(self, old: Obj, new: Obj) -> None:
        version = "resourceVersion"
        if old["metadata"].get(version) == new["metadata"].get(version):
            return
        self._wake_selecting(new)
        if labels_of(old) != labels_of(new):
            self._wake_selecting(old)

    async def run(self) -> None:
        await run_with_informers(self.controller, *self.informers)

    async def reconcile(self, key: str) -> float | None:
        service = self.services.cache.get(key)
        namespace = key.partition("/")[0]
        pods = self.pods.cache.by_index("namespace", namespace)
        current = self.endpoints.cache.get(key)
        for action in eps.decide_endpoints(service, pods, current, events.timestamp()):
            if not await self.act_on_endpoints(namespace, action):
                return PENDING_POLL  # the cache is behind the server: look again
        if service is None:
            self.pending.pop(key, None)
            return None
        if self._waiting_for_slices(key):
            return PENDING_POLL
        existing = self.slices.cache.by_index("service", key)
        try:
            for slice_action in decide_slices(service, pods, existing):
                await self.act_on_slice(key, namespace, slice_action)
        except Conflict:  # updated from a stale cache: look again once it has caught up
            return PENDING_POLL
        return None

    def _waiting_for_slices(self, key: str) -> bool:
        """Slices this controller created are not all in the cache yet (deciding now would
        create them again)."""
        pending = self.pending.get(key)
        if pending is None:
            return False
        pending.names = {n for n in pending.names if f"{key.partition('/')[0]}/{n}" not in
                         self.slices.cache}  # fmt: skip
        if not pending.names or time.monotonic() > pending.deadline:
            del self.pending[key]
            return False
        return True

    async def act_on_endpoints(self, namespace: str, action: eps.EndpointsAction) -> bool:
        """Apply one Endpoints action; False when it lost a race with the informer's cache."""
        try:
            if isinstance(action, eps.DeleteEndpoints):
                with contextlib.suppress(NotFound):
                    await self.client.delete(ENDPOINTS, action.name, namespace)
            elif action.endpoints["metadata"].get("resourceVersion"):
                await self.client.update(ENDPOINTS, action.endpoints)
            else:
                await self.client.create(ENDPOINTS, action.endpoints, namespace)
        except (AlreadyExists, Conflict, NotFound):
            return False
        return True

    async def act_on_slice(self, key: str, namespace: str, action: SliceAction) -> None:
        if isinstance(action, CreateSlice):
            created = await self.client.create(ENDPOINTSLICES, action.endpoint_slice, namespace)
            pending = self.pending.setdefault(key, PendingSlices(set(), 0.0))
            pending.names.add(created["metadata"]["name"])
            pending.deadline = time.monotonic() + PENDING_TIMEOUT
        elif isinstance(action, UpdateSlice):
            with contextlib.suppress(NotFound):
                await self.client.update(ENDPOINTSLICES, action.endpoint_slice)
        elif isinstance(action, DeleteSlice):
            with contextlib.suppress(NotFound):
                await self.client.delete(ENDPOINTSLICES, action.name, namespace)
