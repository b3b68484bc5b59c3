"""The built-in kinds: declarations, defaulting, validation and `kubectl get` cells."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from unistack.apiserver import tables
from unistack.apiserver.errors import FieldError
from unistack.apiserver.kinds import (
    apiextensions,
    apps,
    builtin_types,
    coordination,
    core,
    core_config,
    core_pod,
    core_service,
    core_storage,
    discovery,
    register_builtins,
)
from unistack.apiserver.resources import Registry, ResourceType
from unistack.quantity import QuantityError, parse_quantity

Obj = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _cells(rt: ResourceType, obj: Obj) -> dict[str, Any]:
    """Each column's cell, computed as the table code computes it."""
    return {c.name: tables.cell(c, obj, NOW) for c in rt.columns}


def _errors(rt: ResourceType, obj: Obj, old: Obj | None = None) -> list[str]:
    assert rt.validator is not None
    return [f"{e.field}: {e.message()}" for e in rt.validator(obj, old)]


def _fields(problems: list[FieldError]) -> list[str]:
    return [p.field for p in problems]


def _defaulted(rt: ResourceType, obj: Obj) -> Obj:
    assert rt.defaulter is not None
    rt.defaulter(obj)
    return obj


def _pod(**spec: Any) -> Obj:
    meta = {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"}
    containers = [{"name": "app", "image": "nginx:1.25"}]
    return {"kind": "Pod", "metadata": meta, "spec": {"containers": containers, **spec}}


def _deployment(selector: Obj | None = None) -> Obj:
    containers = [{"name": "app", "image": "nginx"}]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
    spec: Obj = {"template": template} | ({"selector": selector} if selector is not None else {})
    return {"kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


# --- declarations -----------------------------------------------------------------------------


def test_builtin_groups_are_in_discovery_order() -> None:
    registry = Registry()
    register_builtins(registry)
    assert registry.groups() == [
        "", "apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "storage.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io", "authorization.k8s.io", "rbac.authorization.k8s.io",
    ]  # fmt: skip
    assert registry.lookup("apps", "v1", "deployments") is apps.DEPLOYMENT


def test_declarations_match_upstream_discovery() -> None:
    by_plural = {rt.plural: rt for rt in builtin_types()}
    assert by_plural["pods"].short_names == ("po",)
    assert by_plural["customresourcedefinitions"].short_names == ("crd", "crds")
    assert by_plural["namespaces"].subresources == ("status", "finalize")
    assert by_plural["deployments"].subresources == ("status", "scale")
    assert by_plural["daemonsets"].subresources == ("status",)
    assert by_plural["configmaps"].subresources == ()
    assert not by_plural["namespaces"].namespaced
    assert "all" in by_plural["statefulsets"].categories
    assert "all" not in by_plural["configmaps"].categories
    assert not by_plural["secrets"].tracks_generation and not by_plural["pods"].tracks_generation
    assert by_plural["deployments"].tracks_generation
    assert by_plural["namespaces"].extra["name_format"] == "dns1123label"


# --- quantities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", Fraction(1, 10)), ("1Gi", Fraction(2**30)), ("2", Fraction(2)),
     ("1e3", Fraction(1000)), ("1.5", Fraction(3, 2)), ("500M", Fraction(500 * 10**6)),
     (3, Fraction(3))],
)  # fmt: skip
def test_quantities_parse_to_exact_values(text: Any, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1Gb", "abc", "1.2.3", "--1"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


# --- pods ---------------------------------------------------------------------------------------


def test_pod_defaults_follow_upstream() -> None:
    pod = _defaulted(core_pod.POD, _pod())
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert (spec["restartPolicy"], spec["dnsPolicy"]) == ("Always", "ClusterFirst")
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["serviceAccountName"] == "default" and spec["enableServiceLinks"] is True
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert {t["key"] for t in spec["tolerations"]} == {
        "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx", "Always"), ("nginx:latest", "Always"), ("reg:5000/nginx", "Always"),
     ("nginx:1.25", "IfNotPresent"), ("nginx@sha256:abc", "IfNotPresent")],
)  # fmt: skip
def test_image_pull_policy_depends_on_the_tag(image: str, policy: str) -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["image"] = image
    assert _defaulted(core_pod.POD, pod)["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_limits_become_requests_and_decide_the_qos_class() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    pod = _defaulted(core_pod.POD, pod)
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert pod["status"]["qosClass"] == "Guaranteed"
    burstable = _pod()
    burstable["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    assert _defaulted(core_pod.POD, burstable)["status"]["qosClass"] == "Burstable"


def test_new_pod_row_shows_pending_and_nothing_ready() -> None:
    cells = _cells(core_pod.POD, _defaulted(core_pod.POD, _pod()))
    assert cells["Ready"] == "0/1"
    assert cells["Status"] == "Pending"
    assert cells["Restarts"] == "0"
    assert cells["Age"] == "5m"
    assert (cells["IP"], cells["Node"], cells["Readiness Gates"]) == ("<none>",) * 3


def _with_status(pod: Obj, **status: Any) -> Obj:
    pod["status"] = status
    return pod


def test_running_pod_row_counts_ready_containers_and_restarts() -> None:
    finished = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    container = {
        "name": "app", "ready": True, "restartCount": 2, "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": finished}},
    }  # fmt: skip
    pod = _with_status(
        _pod(), phase="Running", podIPs=[{"ip": "10.0.0.7"}], containerStatuses=[container]
    )
    cells = _cells(core_pod.POD, pod)
    assert (cells["Ready"], cells["Status"], cells["IP"]) == ("1/1", "Running", "10.0.0.7")
    assert cells["Restarts"].startswith("2 (3m") and cells["Restarts"].endswith(" ago)")


@pytest.mark.parametrize(
    ("state", "status"),
    [({"waiting": {"reason": "CrashLoopBackOff"}}, "CrashLoopBackOff"),
     ({"waiting": {"reason": "ContainerCreating"}}, "ContainerCreating"),
     ({"terminated": {"exitCode": 0, "reason": "Completed"}}, "Completed"),
     ({"terminated": {"exitCode": 137}}, "ExitCode:137"),
     ({"terminated": {"exitCode": 0, "signal": 9}}, "Signal:9")],
)  # fmt: skip
def test_pod_status_column_reads_container_states(state: Obj, status: str) -> None:
    pod = _with_status(_pod(), phase="Running", containerStatuses=[{"name": "app", "state": state}])
    assert core_pod.pod_status(pod) == status


def test_pod_status_column_shows_init_progress_and_termination() -> None:
    pod = _pod(initContainers=[{"name": "init", "image": "busybox"}])
    init = {"name": "init", "state": {"running": {}}}
    assert (
        core_pod.pod_status(_with_status(pod, phase="Pending", initContainerStatuses=[init]))
        == "Init:0/1"
    )
    pod = _with_status(_pod(), phase="Running")
    pod["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert core_pod.pod_status(pod) == "Terminating"


def test_pod_table_through_the_table_code() -> None:
    table = tables.to_table(core_pod.POD, [_defaulted(core_pod.POD, _pod())], list_meta={}, now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:6] == ["Name", "Ready", "Status", "Restarts", "Age", "IP"]
    assert table["rows"][0]["cells"][:5] == ["web", "0/1", "Pending", "0", "5m"]


def test_valid_pod_has_no_errors() -> None:
    assert _errors(core_pod.POD, _defaulted(core_pod.POD, _pod())) == []


def test_pod_without_containers_is_rejected() -> None:
    pod = _defaulted(core_pod.POD, _pod())
    pod["spec"]["containers"] = []
    assert _errors(core_pod.POD, pod) == ["spec.containers: Required value"]


@pytest.mark.parametrize(
    ("container", "field", "reason"),
    [({"name": "App", "image": "x"}, "spec.containers[0].name", "FieldValueInvalid"),
     ({"name": "app"}, "spec.containers[0].image", "FieldValueRequired"),
     ({"name": "app", "image": "x", "ports": [{"containerPort": 70000}]},
      "spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
     ({"name": "app", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]},
      "spec.containers[0].ports[0].protocol", "FieldValueNotSupported"),
     ({"name": "app", "image": "x", "resources": {"requests": {"memory": "lots"}}},
      "spec.containers[0].resources.requests[memory]", "FieldValueInvalid"),
     ({"name": "app", "image": "x",
       "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
      "spec.containers[0].resources.requests[cpu]", "FieldValueInvalid")],
)  # fmt: skip
def test_bad_containers_are_reported_at_their_field(
    container: Obj, field: str, reason: str
) -> None:
    pod = _pod()
    pod["spec"]["containers"] = [container]
    problems = core_pod.validate_pod(_defaulted(core_pod.POD, pod), None)
    assert [(p.field, p.type) for p in problems] == [(field, reason)]


@pytest.mark.parametrize(
    ("host_path", "problems"),
    [
        ({"path": "/srv"}, []),  # no type: kube's default "" (no check)
        ({"path": "/srv", "type": "DirectoryOrCreate"}, []),
        ({"path": "/srv", "type": "Folder"},
         [("spec.volumes[0].hostPath.type", "FieldValueNotSupported")]),
        ({}, [("spec.volumes[0].hostPath.path", "FieldValueRequired")]),
    ],
)  # fmt: skip
def test_host_path_volumes(host_path: Obj, problems: list[tuple[str, str]]) -> None:
    pod = _pod(volumes=[{"name": "src", "hostPath": host_path}])
    found = core_pod.validate_pod(_defaulted(core_pod.POD, pod), None)
    assert [(p.field, p.type) for p in found] == problems


def test_duplicate_container_names_and_bad_restart_policy() -> None:
    pod = _pod(restartPolicy="Sometimes")
    pod["spec"]["containers"].append({"name": "app", "image": "x"})
    assert _errors(core_pod.POD, _defaulted(core_pod.POD, pod)) == [
        'spec.containers[1].name: Duplicate value: "app"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
        '"Always", "OnFailure", "Never"',
    ]


def test_pod_update_may_change_images_but_not_other_fields() -> None:
    old = _defaulted(core_pod.POD, _pod())
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["tolerations"].append({"key": "k", "operator": "Exists"})
    assert _errors(core_pod.POD, new, old) == []
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    [problem] = core_pod.validate_pod(new, old)
    assert (problem.field, problem.type) == ("spec", "FieldValueForbidden")
    assert problem.detail.startswith(core_pod.POD_UPDATE_FORBIDDEN)
    assert "spec.containers[0].ports" in problem.detail


# --- workloads ----------------------------------------------------------------------------------


def test_deployment_defaults() -> None:
    spec = _defaulted(apps.DEPLOYMENT, _deployment({"matchLabels": {"app": "web"}}))["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }  # fmt: skip
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    template_spec = spec["template"]["spec"]
    assert template_spec["restartPolicy"] == "Always"
    assert "serviceAccountName" not in template_spec and "status" not in spec["template"]


def test_deployment_selector_must_match_template_labels() -> None:
    deployment = _defaulted(apps.DEPLOYMENT, _deployment({"matchLabels": {"app": "api"}}))
    assert _errors(apps.DEPLOYMENT, deployment) == [
        'spec.template.metadata.labels: Invalid value: {"app":"web"}: '
        "`selector` does not match template `labels`"
    ]


def test_deployment_selector_is_required_and_nonempty() -> None:
    missing = _defaulted(apps.DEPLOYMENT, _deployment())
    assert _errors(apps.DEPLOYMENT, missing) == ["spec.selector: Required value"]
    empty = _defaulted(apps.DEPLOYMENT, _deployment({}))
    assert _fields(apps.validate_deployment(empty, None)) == ["spec.selector"]


def test_deployment_template_is_validated_as_a_pod_spec() -> None:
    deployment = _deployment({"matchLabels": {"app": "web"}})
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    deployment["spec"]["replicas"] = -1
    problems = apps.validate_deployment(_defaulted(apps.DEPLOYMENT, deployment), None)
    assert _fields(problems) == ["spec.replicas", "spec.template.spec.containers[0].image"]


def test_deployment_selector_is_immutable() -> None:
    old = _defaulted(apps.DEPLOYMENT, _deployment({"matchLabels": {"app": "web"}}))
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "front"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
    assert _errors(apps.DEPLOYMENT, new, old) == [
        'spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"front"}}: '
        "field is immutable"
    ]


def test_deployment_cells() -> None:
    deployment = _defaulted(apps.DEPLOYMENT, _deployment({"matchLabels": {"app": "web"}}))
    deployment["spec"]["replicas"] = 3
    deployment["status"] = {"readyReplicas": 2, "updatedReplicas": 3}
    cells = _cells(apps.DEPLOYMENT, deployment)
    assert (cells["Ready"], cells["Up-to-date"], cells["Available"]) == ("2/3", 3, 0)
    assert (cells["Containers"], cells["Images"], cells["Selector"]) == ("app", "nginx", "app=web")


def test_stateful_set_and_daemon_set_defaults() -> None:
    sts = _deployment({"matchLabels": {"app": "web"}}) | {"kind": "StatefulSet"}
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {}}]
    spec = _defaulted(apps.STATEFUL_SET, sts)["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain",
    }  # fmt: skip
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    ds = _defaulted(apps.DAEMON_SET, _deployment({"matchLabels": {"app": "web"}}))
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_stateful_set_spec_is_mostly_immutable() -> None:
    old = _defaulted(apps.STATEFUL_SET, _deployment({"matchLabels": {"app": "web"}}))
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert _errors(apps.STATEFUL_SET, new, old) == []
    new["spec"]["serviceName"] = "other"
    assert _fields(apps.validate_stateful_set(new, old)) == ["spec"]


def test_stateful_set_containers_mount_their_claim_templates() -> None:
    sts = _deployment({"matchLabels": {"app": "web"}}) | {"kind": "StatefulSet"}
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": claim}]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    assert _errors(apps.STATEFUL_SET, _defaulted(apps.STATEFUL_SET, copy.deepcopy(sts))) == []
    container["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})
    assert _fields(apps.validate_stateful_set(_defaulted(apps.STATEFUL_SET, sts), None)) == [
        "spec.template.spec.containers[0].volumeMounts[1].name"
    ]


def test_replica_set_and_daemon_set_template_restart_policy() -> None:
    rs = _deployment({"matchLabels": {"app": "web"}})
    rs["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    problems = apps.validate_replica_set(_defaulted(apps.REPLICA_SET, rs), None)
    assert [(p.field, p.type) for p in problems] == [
        ("spec.template.spec.restartPolicy", "FieldValueNotSupported")
    ]
    cells = _cells(apps.REPLICA_SET, rs)
    assert (cells["Desired"], cells["Current"], cells["Ready"]) == (1, 0, 0)


# --- services -----------------------------------------------------------------------------------


def _service(**spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


def test_service_defaults_and_cells() -> None:
    svc = _defaulted(core_service.SERVICE, _service(selector={"app": "web"}, ports=[{"port": 80}]))
    spec = svc["spec"]
    assert (spec["type"], spec["sessionAffinity"], spec["internalTrafficPolicy"]) == (
        "ClusterIP", "None", "Cluster",
    )  # fmt: skip
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])
    spec["clusterIP"] = "10.96.0.10"
    cells = _cells(core_service.SERVICE, svc)
    assert (cells["Type"], cells["Cluster-IP"], cells["External-IP"]) == (
        "ClusterIP", "10.96.0.10", "<none>",
    )  # fmt: skip
    assert (cells["Port(s)"], cells["Selector"]) == ("80/TCP", "app=web")
    spec.update(type="NodePort", ports=[{"port": 80, "nodePort": 30080, "protocol": "TCP"}])
    assert _cells(core_service.SERVICE, svc)["Port(s)"] == "80:30080/TCP"


def test_service_validation() -> None:
    assert _errors(core_service.SERVICE, _defaulted(core_service.SERVICE, _service())) == [
        "spec.ports: Required value"
    ]
    headless = _defaulted(core_service.SERVICE, _service(clusterIP="None"))
    assert _errors(core_service.SERVICE, headless) == []
    bad = _service(type="Fancy", ports=[{"port": 0, "protocol": "HTTP"}])
    assert _fields(core_service.validate_service(_defaulted(core_service.SERVICE, bad), None)) == [
        "spec.type", "spec.ports[0].port", "spec.ports[0].protocol", "spec.ports[0].targetPort",
    ]  # fmt: skip


def test_service_cluster_ip_is_immutable() -> None:
    old = _defaulted(core_service.SERVICE, _service(clusterIP="10.96.0.10", ports=[{"port": 80}]))
    new = copy.deepcopy(old)
    new["spec"].update(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"])
    assert _errors(core_service.SERVICE, new, old) == [
        'spec.clusterIPs[0]: Invalid value: "10.96.0.11": may not change once set'
    ]


# --- config, namespaces, nodes, storage -------------------------------------------------------


def test_config_map_keys_must_be_config_keys() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"ok.key": "1", "bad key": "2"}}
    [problem] = core_config.validate_config_map(cm, None)
    assert (problem.field, problem.value) == ("data[bad key]", "bad key")
    assert _cells(core_config.CONFIG_MAP, cm)["Data"] == 2


def test_secret_string_data_is_folded_into_data() -> None:
    secret = _defaulted(core_config.SECRET, {"metadata": {"name": "s"}, "stringData": {"a": "hi"}})
    assert (secret["type"], secret["data"], "stringData" in secret) == (
        "Opaque",
        {"a": "aGk="},
        False,
    )
    assert _errors(core_config.SECRET, secret) == []
    secret["data"]["b"] = "not base64!"
    assert _fields(core_config.validate_secret(secret, None)) == ["data[b]"]


def test_tls_secret_needs_its_keys_and_immutable_data_stays() -> None:
    tls = {"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {}}
    assert _fields(core_config.validate_secret(tls, None)) == ["data[tls.crt]", "data[tls.key]"]
    old = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "aGk="}, "immutable": True}
    new = old | {"data": {"a": "aG8="}}
    assert _errors(core_config.SECRET, new, old) == [
        "data: Forbidden: field is immutable when `immutable` is set"
    ]


def test_namespace_defaults_and_cells() -> None:
    ns = _defaulted(core.NAMESPACE, {"metadata": {"name": "team-a"}})
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert _cells(core.NAMESPACE, ns)["Status"] == "Active"
    finalizing = _defaulted(core.NAMESPACE, {"metadata": {"name": "b"}, "spec": {"finalizers": []}})
    assert finalizing["spec"]["finalizers"] == []


def test_node_cells() -> None:
    node = {
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31.0"},
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
        },
    }
    cells = _cells(core.NODE, node)
    assert (cells["Status"], cells["Roles"], cells["Version"]) == (
        "Ready,SchedulingDisabled", "control-plane", "v1.31.0",
    )  # fmt: skip
    assert (cells["Internal-IP"], cells["External-IP"], cells["OS-Image"]) == (
        "192.168.1.10", "<none>", "<unknown>",
    )  # fmt: skip


def test_claims_default_and_need_storage() -> None:
    claim = _defaulted(
        core_storage.PERSISTENT_VOLUME_CLAIM, {"metadata": {"name": "c"}, "spec": {}}
    )
    assert (claim["spec"]["volumeMode"], claim["status"]["phase"]) == ("Filesystem", "Pending")
    assert _errors(core_storage.PERSISTENT_VOLUME_CLAIM, claim) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]
    volume = _defaulted(core_storage.PERSISTENT_VOLUME, {"metadata": {"name": "v"}, "spec": {}})
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    volume["spec"].update(
        accessModes=["ReadWriteOnce", "ReadOnlyMany"], capacity={"storage": "1Gi"}
    )
    volume["spec"]["hostPath"] = {"path": "/srv/v"}
    assert _errors(core_storage.PERSISTENT_VOLUME, volume) == []
    assert _cells(core_storage.PERSISTENT_VOLUME, volume)["Access Modes"] == "RWO,ROX"


# --- leases, endpoint slices, CRDs ---------------------------------------------------------------


def test_lease_spec_types_and_ranges() -> None:
    lease: Obj = {
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 0},
    }
    assert _errors(coordination.LEASE, lease) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    ]
    lease["spec"] |= {"leaseDurationSeconds": "15", "renewTime": "2024-05-01T12:00:00.000000Z"}
    assert [p.type for p in coordination.validate_lease(lease, None)] == ["FieldValueTypeInvalid"]
    assert _cells(coordination.LEASE, lease)["Holder"] == "me"


def test_endpoint_slice_defaults_validation_and_cells() -> None:
    eps: Obj = {
        "metadata": {"name": "web-abc"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
        "ports": [{"port": 80}],
    }
    eps = _defaulted(discovery.ENDPOINT_SLICE, eps)
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert _errors(discovery.ENDPOINT_SLICE, eps) == []
    cells = _cells(discovery.ENDPOINT_SLICE, eps)
    assert (cells["Ports"], cells["Endpoints"]) == ("80", "10.0.0.1,10.0.0.2")
    eps["endpoints"][0]["addresses"] = ["fe80::1"]
    assert _fields(discovery.validate_endpoint_slice(eps, None)) == ["endpoints[0].addresses[0]"]


CRD = apiextensions.CUSTOM_RESOURCE_DEFINITION
_V1 = {
    "name": "v1",
    "served": True,
    "storage": True,
    "schema": {"openAPIV3Schema": {"type": "object"}},
}


def _crd(**spec: Any) -> Obj:
    names = {"plural": "widgets", "kind": "Widget"}
    base = {"group": "example.com", "scope": "Namespaced", "names": names, "versions": [_V1]}
    meta = {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T11:00:00Z"}
    return {"metadata": meta, "spec": base | spec}


def test_crd_defaults_and_created_at() -> None:
    crd = _defaulted(CRD, _crd())
    names = crd["spec"]["names"]
    assert (names["singular"], names["listKind"]) == ("widget", "WidgetList")
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert _errors(CRD, crd) == []
    assert _cells(CRD, crd) == {"Created At": "2024-05-01T11:00:00Z"}


def test_crd_validation() -> None:
    crd = _crd(group="example", scope="Global", versions=[_V1, _V1 | {"name": "v2"}])
    assert _errors(CRD, _defaulted(CRD, crd))[0] == (
        'metadata.name: Invalid value: "widgets.example.com": '
        'must be spec.names.plural+"."+spec.group'
    )
    assert _fields(apiextensions.validate_crd(crd, None))[1:] == [
        "spec.group", "spec.scope", "spec.versions",
    ]  # fmt: skip
    old = _defaulted(CRD, _crd())
    renamed = copy.deepcopy(old)
    renamed["spec"]["names"]["plural"] = "gadgets"
    assert "spec.names.plural" in _fields(apiextensions.validate_crd(renamed, old))


def test_the_default_class_is_the_newest_then_the_first_by_name() -> None:
    """The API server's admission and the provisioner's retroactive assignment agree."""
    from unistack.apiserver.kinds import storage as storage_kinds
    from unistack.kube import provisioner

    def sc(name: str, created: str, default: bool = True) -> Obj:
        notes = {storage_kinds.DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
        return {"metadata": {"name": name, "creationTimestamp": created, "annotations": notes}}

    claim: Obj = {"metadata": {}, "spec": {}}
    cases = [
        ([sc("old", "2024-01-01T00:00:00Z"), sc("new", "2024-02-01T00:00:00Z")], "new"),
        ([sc("b", "2024-01-01T00:00:00Z"), sc("a", "2024-01-01T00:00:00Z")], "a"),
        ([sc("x", "2024-03-01T00:00:00Z", default=False)], None),
    ]
    for classes, expected in cases:
        assert storage_kinds.default_class_for(claim, classes) == expected
        assert provisioner.default_class(classes) == expected
