"""The official `kubernetes` Python client against `unistack up --detach`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.e2e.conftest import Cluster


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def namespace(api: client.ApiClient) -> str:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="pyclient")))
    return "pyclient"


def test_crud(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg", labels={"a": "b"}), data={"k": "v"}
    )
    created = core.create_namespaced_config_map(namespace, body)
    assert created.metadata.uid and created.metadata.resource_version
    read = core.read_namespaced_config_map("cfg", namespace)
    assert read.data == {"k": "v"}
    read.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cfg", namespace, read)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    stale = created
    stale.data = {"k": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", namespace, stale)
    assert conflict.value.status == 409
    patched = core.patch_namespaced_config_map("cfg", namespace, {"data": {"extra": "1"}})
    assert patched.data == {"k": "w", "extra": "1"}
    listed = core.list_namespaced_config_map(namespace, label_selector="a=b")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    core.delete_namespaced_config_map("cfg", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cfg", namespace)
    assert missing.value.status == 404


def test_apps_status_and_scale(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "x"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    spec = client.V1DeploymentSpec(
        replicas=1, selector=client.V1LabelSelector(match_labels={"app": "x"}), template=template
    )
    apps.create_namespaced_deployment(
        namespace, client.V1Deployment(metadata=client.V1ObjectMeta(name="d"), spec=spec)
    )
    scale = apps.read_namespaced_deployment_scale("d", namespace)
    assert scale.spec.replicas == 1
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 4}})
    dep = apps.read_namespaced_deployment("d", namespace)
    assert dep.spec.replicas == 4 and dep.spec.strategy.type == "RollingUpdate"  # defaulted
    deadline = time.monotonic() + 30  # the Deployment controller reports its pods
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment("d", namespace)
        current = dep.status and dep.status.observed_generation == dep.metadata.generation
        if current and dep.status.replicas == 4:
            break
        time.sleep(0.3)
    assert dep.status.replicas == 4


def test_status_subresource(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    port = client.V1ServicePort(port=80)
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="lb"),
        spec=client.V1ServiceSpec(type="LoadBalancer", ports=[port]),
    )
    core.create_namespaced_service(namespace, service)
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
    core.patch_namespaced_service_status("lb", namespace, ingress)
    core.patch_namespaced_service("lb", namespace, {"status": {"loadBalancer": {}}})  # ignored
    read = core.read_namespaced_service("lb", namespace)
    assert read.status.load_balancer.ingress[0].ip == "192.0.2.10"


def test_watch_and_resume(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    names = [f"w{i}" for i in range(3)]
    for name in names:
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
        )
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=10
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", n) for n in names]

    resume_from = core.read_namespaced_config_map("w1", namespace).metadata.resource_version
    core.delete_namespaced_config_map("w0", namespace)
    later: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=resume_from, timeout_seconds=10
    ):
        later.append((event["type"], event["object"].metadata.name))
        if ("DELETED", "w0") in later:
            w.stop()
    assert later == [("ADDED", "w2"), ("DELETED", "w0")]


def test_live_watch_delivers_new_events(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_secret(namespace).metadata.resource_version

    def later() -> None:
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name="live"), string_data={"a": "b"}),
        )

    timer = threading.Timer(0.5, later)
    timer.start()
    w = watch.Watch()
    got = None
    for event in w.stream(
        core.list_namespaced_secret, namespace, resource_version=rv, timeout_seconds=10
    ):
        got = event
        w.stop()
    timer.join()
    assert got is not None and got["type"] == "ADDED" and got["object"].metadata.name == "live"


def test_410_after_compaction(cluster: Cluster, api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    old = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after"))
    )
    compacted = cluster.unistack("compact")
    assert compacted.returncode == 0, compacted.stderr
    w = watch.Watch()
    with pytest.raises(ApiException) as gone:
        for _ in w.stream(
            core.list_namespaced_config_map, namespace, resource_version=old, timeout_seconds=5
        ):
            pass
    assert gone.value.status == 410
