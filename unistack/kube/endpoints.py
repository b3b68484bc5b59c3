"""The Endpoints controller: a Service's selected pods, written as `v1 Endpoints`.

For each Service with a selector (queue key `namespace/name`) the pure `decide_endpoints`
turns the pods of its namespace into the Endpoints kube-controller-manager's endpoints
controller writes: pods with a `status.podIP` that the selector matches, Ready ones in
`subsets[].addresses` and the others in `notReadyAddresses` (or all in `addresses` when the
Service has `publishNotReadyAddresses`), each port resolved from the Service's `targetPort`
(a number, or a container port name) and addresses with the same ports sharing a subset.
Pods being deleted or finished are left out. Services without a selector are left alone:
their users manage their Endpoints. When a Service goes, the Endpoints this controller wrote
(marked by the `last-change-trigger-time` annotation, as kube) are deleted.

The pod and port helpers here are shared with `unistack.kube.endpointslices`, which decides
the Service's EndpointSlices; `EndpointsController` (in `endpointslices.py`, which needs
both) observes and acts for the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unistack.kube.replicaset import is_ready, is_terminating, labels_of

Obj = dict[str, Any]
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


# --- services and pods (pure) -----------------------------------------------------------------


def service_selector(service: Obj) -> dict[str, str]:
    """The Service's selector (a plain label map); empty when it has none."""
    return dict((service.get("spec") or {}).get("selector") or {})


def service_selects(service: Obj, pod: Obj) -> bool:
    """The Service has a selector and the pod's labels carry all of it."""
    selector, labels = service_selector(service), labels_of(pod)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def publishes_not_ready(service: Obj) -> bool:
    return bool((service.get("spec") or {}).get("publishNotReadyAddresses"))


def is_headless(service: Obj) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def pod_ip(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def should_publish(pod: Obj, *, include_terminating: bool) -> bool:
    """kube's ShouldPodBeInEndpoints: has an IP, is not finished (nor being deleted)."""
    if not pod_ip(pod) or is_finished(pod):
        return False
    return include_terminating or not is_terminating(pod)


def selected_pods(service: Obj, pods: Iterable[Obj], *, include_terminating: bool) -> list[Obj]:
    """The pods the Service's endpoints are made of, sorted by name."""
    chosen = [
        p
        for p in pods
        if service_selects(service, p)
        and should_publish(p, include_terminating=include_terminating)
    ]
    return sorted(chosen, key=lambda p: str(p["metadata"]["name"]))


def resolve_target_port(service_port: Obj, pod: Obj) -> int | None:
    """The pod's port for a Service port: `targetPort` as a number, or the container port of
    that name and protocol (None when the pod has no such port)."""
    target = service_port.get("targetPort")
    if target in (None, "", 0):
        return int(service_port["port"])
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


@dataclass(frozen=True, slots=True, order=True)
class EndpointPort:
    """One resolved port: the Service port's name and protocol, the pod's port number."""

    name: str
    port: int
    protocol: str
    app_protocol: str = ""


def pod_ports(service: Obj, pod: Obj) -> tuple[EndpointPort, ...]:
    """The Service's ports as this pod serves them; ports it lacks are left out."""
    found = []
    for service_port in (service.get("spec") or {}).get("ports") or []:
        number = resolve_target_port(service_port, pod)
        if number is not None:
            name, protocol = service_port.get("name") or "", service_port.get("protocol") or "TCP"
            found.append(EndpointPort(name, number, protocol, service_port.get("appProtocol", "")))
    return tuple(sorted(found))


def target_ref(pod: Obj) -> Obj:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
            "uid": meta.get("uid")}  # fmt: skip


def pod_hostname(service: Obj, pod: Obj) -> str:
    """`spec.hostname`, when the pod's subdomain is this Service (its DNS name)."""
    spec = pod.get("spec") or {}
    named = spec.get("subdomain") == service["metadata"]["name"]
    return str(spec.get("hostname") or "") if named else ""


# --- Endpoints (pure) -------------------------------------------------------------------------


def endpoint_address(service: Obj, pod: Obj) -> Obj:
    address: Obj = {"ip": pod_ip(pod)}
    if hostname := pod_hostname(service, pod):
        address["hostname"] = hostname
    if node := (pod.get("spec") or {}).get("nodeName"):
        address["nodeName"] = node
    address["targetRef"] = target_ref(pod)
    return address


def endpoints_port(port: EndpointPort) -> Obj:
    written: Obj = {"port": port.port, "protocol": port.protocol}
    if port.name:
        written["name"] = port.name
    if port.app_protocol:
        written["appProtocol"] = port.app_protocol
    return written


def _needs_ports(service: Obj) -> bool:
    """A headless Service without ports publishes bare addresses."""
    return bool((service.get("spec") or {}).get("ports")) or not is_headless(service)


def endpoints_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """kube's subsets: pods serving the same ports share a subset (RepackSubsets)."""
    tolerate = publishes_not_ready(service)
    groups: dict[tuple[EndpointPort, ...], tuple[list[Obj], list[Obj]]] = {}
    for pod in selected_pods(service, pods, include_terminating=tolerate):
        ports = pod_ports(service, pod)
        if not ports and _needs_ports(service):
            continue
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if tolerate or is_ready(pod) else not_ready).append(endpoint_address(service, pod))
    return [_subset(ports, *addresses) for ports, addresses in sorted(groups.items())]


def _subset(ports: tuple[EndpointPort, ...], ready: list[Obj], not_ready: list[Obj]) -> Obj:
    subset: Obj = {}
    if ready:
        subset["addresses"] = sorted(ready, key=_address_order)
    if not_ready:
        subset["notReadyAddresses"] = sorted(not_ready, key=_address_order)
    if ports:
        subset["ports"] = [endpoints_port(p) for p in ports]
    return subset


def _address_order(address: Obj) -> tuple[str, str]:
    return (address["ip"], str(address.get("targetRef", {}).get("uid", "")))


@dataclass(frozen=True, slots=True)
class WriteEndpoints:
    """Create (no `resourceVersion`) or replace the Endpoints with this body."""

    endpoints: Obj


@dataclass(frozen=True, slots=True)
class DeleteEndpoints:
    name: str


EndpointsAction = WriteEndpoints | DeleteEndpoints


def endpoints_labels(service: Obj) -> dict[str, str]:
    labels = labels_of(service)
    if is_headless(service):
        labels[HEADLESS_LABEL] = ""
    return labels


def desired_endpoints(service: Obj, pods: Iterable[Obj], current: Obj | None, now: str) -> Obj:
    """The Endpoints for the Service; the current one's metadata kept (resourceVersion: CAS)."""
    meta = service["metadata"]
    metadata: Obj = dict((current or {}).get("metadata") or {})
    metadata.update(name=meta["name"], namespace=meta.get("namespace"))
    metadata["labels"] = endpoints_labels(service)
    metadata["annotations"] = {**(metadata.get("annotations") or {}), TRIGGER_TIME: now}
    endpoints: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata}
    if subsets := endpoints_subsets(service, pods):
        endpoints["subsets"] = subsets
    return endpoints


def _endpoints_changed(current: Obj, desired: Obj) -> bool:
    return (current.get("subsets") or []) != (desired.get("subsets") or []) or labels_of(
        current
    ) != labels_of(desired)


def decide_endpoints(
    service: Obj | None, pods: Iterable[Obj], current: Obj | None, now: str
) -> list[EndpointsAction]:
    """What to do with a Service's Endpoints (`service` None: the Service is gone)."""
    if service is None:
        written_here = current is not None and TRIGGER_TIME in (
            current["metadata"].get("annotations") or {}
        )
        return [DeleteEndpoints(current["metadata"]["name"])] if current and written_here else []
    if not service_selector(service):
        return []
    desired = desired_endpoints(service, pods, current, now)
    if current is not None and not _endpoints_changed(current, desired):
        return []
    return [WriteEndpoints(desired)]
