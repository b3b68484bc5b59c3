"""The scheduler's filters, scores and quantities: pure functions over plain objects."""

from __future__ import annotations

from typing import Any

import pytest

from unistack import quantity
from unistack.kube.scheduler import filters, resources, scoring
from unistack.kube.scheduler.filters import NodeInfo

Obj = dict[str, Any]


def node(
    name: str = "n1", cpu: str = "2", memory: str = "4Gi", pods: str = "110", **spec: Any
) -> Obj:
    labels = spec.pop("labels", {})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def pod(cpu: str | None = None, memory: str | None = None, **spec: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    ports = spec.pop("ports", [])
    container = {"name": "c", "image": "x", "resources": {"requests": requests}, "ports": ports}
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [container], **spec},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", 0.1), ("2", 2), ("1Gi", 2**30), ("1e3", 1000), ("1.5k", 1500), ("64Mi", 64 * 2**20)],
)
def test_quantities_parse_like_upstream(text: str, value: float) -> None:
    assert quantity.parse_quantity(text) == pytest.approx(value)


def test_cpu_counts_in_millicores_and_bad_quantities_count_zero() -> None:
    assert resources.amount("cpu", "250m") == 250
    assert resources.amount("memory", "1Ki") == 1024
    assert resources.amount("memory", "lots") == 0


def test_pod_requests_take_the_larger_of_containers_and_init_containers() -> None:
    p = pod(cpu="300m", memory="100Mi")
    p["spec"]["containers"].append({"name": "d", "resources": {"requests": {"cpu": "200m"}}})
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]
    p["spec"]["overhead"] = {"memory": "10Mi"}
    assert resources.pod_requests(p) == {"cpu": 1000, "memory": 110 * 2**20}


def test_resources_fit_counts_the_pods_already_on_the_node() -> None:
    on_node = (pod(cpu="1500m"),)
    info = NodeInfo.of(node(cpu="2", memory="1Gi"), on_node)
    assert filters.resources_fit(pod(cpu="500m"), info) == []
    assert filters.resources_fit(pod(cpu="600m", memory="2Gi"), info) == [
        "Insufficient cpu",
        "Insufficient memory",
    ]


def test_a_full_node_has_too_many_pods() -> None:
    info = NodeInfo.of(node(pods="1"), (pod(),))
    assert filters.resources_fit(pod(), info) == ["Too many pods"]


def test_extended_resources_must_be_allocatable() -> None:
    p = pod()
    p["spec"]["containers"][0]["resources"]["requests"]["example.com/gpu"] = "1"
    assert filters.resources_fit(p, NodeInfo.of(node())) == ["Insufficient example.com/gpu"]


def test_node_selector_must_match_every_label() -> None:
    info = NodeInfo.of(node(labels={"disk": "ssd", "zone": "a"}))
    assert filters.node_affinity(pod(nodeSelector={"disk": "ssd"}), info) == []
    assert filters.node_affinity(pod(nodeSelector={"disk": "hdd"}), info) == [
        filters.AFFINITY_MISMATCH
    ]


def required(*terms: Obj) -> Obj:
    rule = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
    return {"nodeAffinity": rule}


@pytest.mark.parametrize(
    ("expression", "fits"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["c"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "absent", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
        ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),
    ],
)
def test_required_node_affinity_operators(expression: Obj, fits: bool) -> None:
    info = NodeInfo.of(node(labels={"zone": "a", "cores": "8"}))
    reasons = filters.node_affinity(
        pod(affinity=required({"matchExpressions": [expression]})), info
    )
    assert (reasons == []) is fits


def test_node_selector_terms_are_ored_and_match_fields_name_the_node() -> None:
    info = NodeInfo.of(node("n7", labels={"zone": "a"}))
    wrong_zone = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}
    assert filters.node_affinity(pod(affinity=required(wrong_zone, by_name)), info) == []
    assert filters.node_affinity(pod(affinity=required(wrong_zone)), info) != []
    assert filters.node_affinity(pod(affinity=required({})), info) != []


def test_untolerated_noschedule_taints_filter_the_node() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    info = NodeInfo.of(node(taints=[taint]))
    assert filters.taint_toleration(pod(), info) == [
        "node(s) had untolerated taint {dedicated: gpu}"
    ]
    equal = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    assert filters.taint_toleration(pod(tolerations=[equal]), info) == []
    exists = {"operator": "Exists"}
    assert filters.taint_toleration(pod(tolerations=[exists]), info) == []
    wrong = {"key": "dedicated", "value": "cpu"}
    assert filters.taint_toleration(pod(tolerations=[wrong]), info) != []


def test_prefer_no_schedule_taints_do_not_filter() -> None:
    taint = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    assert filters.taint_toleration(pod(), NodeInfo.of(node(taints=[taint]))) == []


def test_unschedulable_nodes_take_only_pods_that_tolerate_it() -> None:
    info = NodeInfo.of(node(unschedulable=True))
    assert filters.node_unschedulable(pod(), info) == [filters.UNSCHEDULABLE]
    toleration = {"key": filters.UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}
    assert filters.node_unschedulable(pod(tolerations=[toleration]), info) == []


def test_host_ports_conflict_by_protocol_port_and_address() -> None:
    used = pod(ports=[{"containerPort": 80, "hostPort": 8080}])
    info = NodeInfo.of(node(), (used,))
    assert filters.node_ports(pod(ports=[{"containerPort": 80, "hostPort": 8080}]), info) == [
        filters.PORTS_TAKEN
    ]
    udp = [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]
    assert filters.node_ports(pod(ports=udp), info) == []
    assert filters.node_ports(pod(ports=[{"containerPort": 80, "hostPort": 9090}]), info) == []


def test_node_failures_report_only_the_first_failing_filter() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    info = NodeInfo.of(node(cpu="1", taints=[taint]))
    assert filters.node_failures(pod(cpu="2"), info) == ["node(s) had untolerated taint {k: v}"]


def test_least_allocated_prefers_the_emptier_node() -> None:
    empty = NodeInfo.of(node())
    busy = NodeInfo.of(node(), (pod(cpu="1500m", memory="3Gi"),))
    assert scoring.score(pod(cpu="100m"), empty) > scoring.score(pod(cpu="100m"), busy)
    assert 0 <= scoring.least_allocated(pod(), busy) <= 100


def test_balanced_allocation_prefers_even_use() -> None:
    info = NodeInfo.of(node(cpu="4", memory="4Gi"))
    even = pod(cpu="2", memory="2Gi")
    lopsided = pod(cpu="4", memory="100Mi")
    assert scoring.balanced_allocation(even, info) == 100
    assert scoring.balanced_allocation(lopsided, info) < 60
