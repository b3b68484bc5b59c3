"""The Endpoints and EndpointSlice decisions (`decide_endpoints`, `decide_slices`), without I/O."""

from __future__ import annotations

from typing import Any

from unistack.kube.endpoints import (
    TRIGGER_TIME,
    DeleteEndpoints,
    WriteEndpoints,
    decide_endpoints,
    endpoints_subsets,
)
from unistack.kube.endpointslices import (
    CONTROLLER_NAME,
    MANAGED_BY,
    SERVICE_NAME,
    CreateSlice,
    DeleteSlice,
    UpdateSlice,
    decide_slices,
)

Obj = dict[str, Any]
NOW = "2026-01-01T12:00:00Z"
SVC_UID = "svc-uid"


def service(
    *, selector: dict[str, str] | None = None, ports: list[Obj] | None = None, **spec: Any
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": SVC_UID,
                     "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080}],
            **spec,
        },
    }  # fmt: skip


def pod(
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    container_ports: list[Obj] | None = None,
    deleting: bool = False,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "labels": {"app": "web"} if labels is None else labels,
    }
    if deleting:
        meta["deletionTimestamp"] = NOW
    status: Obj = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}  # fmt: skip
    if ip:
        status["podIP"] = ip
    containers = [{"name": "c", "ports": container_ports or []}]
    return {"metadata": meta, "spec": {"nodeName": "n1", "containers": containers},
            "status": status}  # fmt: skip


def ips(addresses: list[Obj]) -> list[str]:
    return [a["ip"] for a in addresses]


def written(actions: list[Any]) -> Obj:
    assert len(actions) == 1 and isinstance(actions[0], WriteEndpoints)
    endpoints: Obj = actions[0].endpoints
    return endpoints


# --- Endpoints ---------------------------------------------------------------------------------


def test_ready_and_not_ready_pods_split_between_addresses() -> None:
    pods = [pod("a", "10.0.0.2"), pod("b", "10.0.0.1", ready=False), pod("c", None)]
    endpoints = written(decide_endpoints(service(), pods, None, NOW))
    assert endpoints["metadata"]["name"] == "web"
    assert endpoints["metadata"]["labels"] == {"team": "a"}
    assert endpoints["metadata"]["annotations"][TRIGGER_TIME] == NOW
    (subset,) = endpoints["subsets"]
    assert subset["addresses"] == [
        {"ip": "10.0.0.2", "nodeName": "n1",
         "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}
    ]  # fmt: skip
    assert ips(subset["notReadyAddresses"]) == ["10.0.0.1"]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_pods_not_matching_the_selector_are_left_out() -> None:
    pods = [pod("a", "10.0.0.1", labels={"app": "other"})]
    assert "subsets" not in written(decide_endpoints(service(), pods, None, NOW))


def test_publish_not_ready_addresses_puts_every_pod_in_addresses() -> None:
    pods = [pod("a", "10.0.0.1", ready=False)]
    (subset,) = endpoints_subsets(service(publishNotReadyAddresses=True), pods)
    assert ips(subset["addresses"]) == ["10.0.0.1"]
    assert "notReadyAddresses" not in subset


def test_terminating_pods_are_excluded() -> None:
    pods = [pod("a", "10.0.0.1", deleting=True), pod("b", "10.0.0.2")]
    (subset,) = endpoints_subsets(service(), pods)
    assert ips(subset["addresses"]) == ["10.0.0.2"]


def test_named_target_port_resolves_per_pod_and_groups_subsets() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"},
                         {"name": "metrics", "port": 9000, "targetPort": 9100}])  # fmt: skip
    pods = [
        pod("a", "10.0.0.1", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.0.0.2", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("c", "10.0.0.3", container_ports=[{"name": "web", "containerPort": 8081}]),
        pod("d", "10.0.0.4"),  # no port named `web`: only in the metrics subset
    ]
    subsets = endpoints_subsets(svc, pods)
    by_ports = {tuple(p["port"] for p in s["ports"]): ips(s["addresses"]) for s in subsets}
    assert by_ports == {
        (8080, 9100): ["10.0.0.1", "10.0.0.2"],
        (8081, 9100): ["10.0.0.3"],
        (9100,): ["10.0.0.4"],
    }


def test_unchanged_endpoints_are_not_written_again() -> None:
    first = written(decide_endpoints(service(), [pod("a", "10.0.0.1")], None, NOW))
    current = {**first, "metadata": {**first["metadata"], "resourceVersion": "5"}}
    assert decide_endpoints(service(), [pod("a", "10.0.0.1")], current, "later") == []
    update = written(decide_endpoints(service(), [pod("a", "10.0.0.9")], current, "later"))
    assert update["metadata"]["resourceVersion"] == "5"


def test_services_without_selector_are_left_alone() -> None:
    current = {"metadata": {"name": "web", "namespace": "default"}, "subsets": []}
    assert decide_endpoints(service(selector={}), [pod("a", "10.0.0.1")], current, NOW) == []
    assert decide_slices(service(selector={}), [pod("a", "10.0.0.1")], []) == []


def test_endpoints_deleted_with_their_service_only_when_written_here() -> None:
    ours = {"metadata": {"name": "web", "annotations": {TRIGGER_TIME: NOW}}}
    theirs = {"metadata": {"name": "web"}}
    assert decide_endpoints(None, [], ours, NOW) == [DeleteEndpoints("web")]
    assert decide_endpoints(None, [], theirs, NOW) == []
    assert decide_endpoints(None, [], None, NOW) == []


# --- EndpointSlices ----------------------------------------------------------------------------


def created_slice(actions: list[Any]) -> Obj:
    assert len(actions) == 1 and isinstance(actions[0], CreateSlice)
    endpoint_slice: Obj = actions[0].endpoint_slice
    return endpoint_slice


def test_slice_shape() -> None:
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)]
    endpoint_slice = created_slice(decide_slices(service(), pods, []))
    meta = endpoint_slice["metadata"]
    assert meta["generateName"] == "web-"
    assert meta["labels"] == {"team": "a", SERVICE_NAME: "web", MANAGED_BY: CONTROLLER_NAME}
    (owner,) = meta["ownerReferences"]
    assert owner == {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": SVC_UID,
                     "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    assert endpoint_slice["addressType"] == "IPv4"
    assert endpoint_slice["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    first, second = endpoint_slice["endpoints"]
    assert first == {
        "addresses": ["10.0.0.1"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": "n1",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
    }
    assert second["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_terminating_pods_stay_in_slices_as_terminating() -> None:
    endpoint_slice = created_slice(
        decide_slices(service(), [pod("a", "10.0.0.1", deleting=True)], [])
    )
    (endpoint,) = endpoint_slice["endpoints"]
    assert endpoint["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_no_pods_gives_a_placeholder_slice() -> None:
    endpoint_slice = created_slice(decide_slices(service(), [], []))
    assert endpoint_slice["endpoints"] == [] and endpoint_slice["ports"] == []


def existing(actions: list[Any], name: str, uid: str = SVC_UID) -> Obj:
    body = created_slice(actions)
    meta = {**body["metadata"], "name": name, "resourceVersion": "3"}
    meta["ownerReferences"] = [{**meta["ownerReferences"][0], "uid": uid}]
    return {**body, "metadata": meta}


def test_slices_are_updated_only_when_changed() -> None:
    current = existing(decide_slices(service(), [pod("a", "10.0.0.1")], []), "web-abcde")
    assert decide_slices(service(), [pod("a", "10.0.0.1")], [current]) == []
    (action,) = decide_slices(service(), [pod("a", "10.0.0.1", ready=False)], [current])
    assert isinstance(action, UpdateSlice)
    assert action.endpoint_slice["metadata"]["name"] == "web-abcde"
    assert action.endpoint_slice["endpoints"][0]["conditions"]["ready"] is False


def test_foreign_and_surplus_slices_are_deleted() -> None:
    made = decide_slices(service(), [pod("a", "10.0.0.1")], [])
    mine, twin = existing(made, "web-aaaaa"), existing(made, "web-bbbbb")
    stale = existing(made, "web-ccccc", uid="old-service")
    actions = decide_slices(service(), [pod("a", "10.0.0.1")], [mine, twin, stale])
    assert actions == [DeleteSlice("web-bbbbb"), DeleteSlice("web-ccccc")]
