"""Discovery documents: the shapes kubectl 1.32 and client-go decode."""

from __future__ import annotations

import pytest

from unistack.apiserver import discovery, kinds
from unistack.apiserver.resources import Registry, ResourceType, Scale

KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
V2_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _registry() -> Registry:
    registry = Registry()
    for rt in (
        ResourceType(
            "", "v1", "Pod", "pods", "pod", True, ("po",), ("all",), status_subresource=True,
            extra_subresources=("log", "exec", "eviction"),
        ),
        ResourceType(
            "", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
            status_subresource=True, extra_subresources=("finalize",),
        ),
        ResourceType(
            "apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",),
            ("all",), status_subresource=True, scale=Scale(),
        ),
        ResourceType(
            "stable.example.com", "v1", "CronTab", "crontabs", "crontab", True, ("ct",),
            custom=True,
        ),
        ResourceType(
            "stable.example.com", "v1beta1", "CronTab", "crontabs", "crontab", True,
            custom=True, storage_version=False,
        ),
    ):  # fmt: skip
        registry.add(rt)
    return registry


def _by_name(entries: list[dict], key: str = "name") -> dict[str, dict]:
    return {entry[key]: entry for entry in entries}


def test_core_versions_names_v1_and_the_server_address() -> None:
    doc = discovery.core_versions("10.0.0.1:6443")
    assert doc["kind"] == "APIVersions"
    assert doc["versions"] == ["v1"]
    assert doc["serverAddressByClientCIDRs"] == [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}
    ]


def test_group_list_excludes_the_core_group() -> None:
    doc = discovery.group_list(_registry())
    assert (doc["kind"], doc["apiVersion"]) == ("APIGroupList", "v1")
    groups = _by_name(doc["groups"])
    assert list(groups) == ["apps", "stable.example.com"]
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}


def test_group_lists_versions_with_the_storage_version_preferred() -> None:
    doc = discovery.group(_registry(), "stable.example.com")
    assert doc is not None
    assert (doc["kind"], doc["name"]) == ("APIGroup", "stable.example.com")
    assert [v["version"] for v in doc["versions"]] == ["v1", "v1beta1"]
    assert doc["preferredVersion"]["groupVersion"] == "stable.example.com/v1"


@pytest.mark.parametrize("name", ["", "nope.example.com"])
def test_group_is_none_for_core_and_unknown_groups(name: str) -> None:
    assert discovery.group(_registry(), name) is None


def test_resource_list_describes_resources_and_subresources() -> None:
    doc = discovery.resource_list(_registry(), "", "v1")
    assert doc is not None
    assert (doc["kind"], doc["groupVersion"]) == ("APIResourceList", "v1")
    names = [entry["name"] for entry in doc["resources"]]
    assert names == sorted(names)
    resources = _by_name(doc["resources"])
    pods = resources["pods"]
    assert pods["kind"] == "Pod" and pods["namespaced"] is True
    assert (pods["singularName"], pods["shortNames"], pods["categories"]) == (
        "pod",
        ["po"],
        ["all"],
    )
    assert "watch" in pods["verbs"] and pods["storageVersionHash"]
    assert resources["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert resources["pods/status"]["kind"] == "Pod"
    assert resources["pods/log"]["verbs"] == ["get"]
    assert resources["pods/exec"]["kind"] == "PodExecOptions"
    eviction = resources["pods/eviction"]
    assert (eviction["group"], eviction["version"], eviction["kind"]) == (
        "policy",
        "v1",
        "Eviction",
    )
    finalize = resources["namespaces/finalize"]
    assert finalize == {
        "name": "namespaces/finalize",
        "singularName": "",
        "namespaced": False,
        "kind": "Namespace",
        "verbs": ["update"],
    }


def test_scale_subresource_answers_with_autoscaling_v1_scale() -> None:
    doc = discovery.resource_list(_registry(), "apps", "v1")
    assert doc is not None
    scale = _by_name(doc["resources"])["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert scale["verbs"] == ["get", "patch", "update"]


def test_storage_version_hash_matches_upstream_and_follows_the_storage_version() -> None:
    registry = _registry()
    apps = discovery.resource_list(registry, "apps", "v1")
    assert apps is not None
    deployments = _by_name(apps["resources"])["deployments"]
    assert deployments["storageVersionHash"] == "8aSe+NMegvE="  # what kube-apiserver answers
    v1 = discovery.resource_list(registry, "stable.example.com", "v1")
    v1beta1 = discovery.resource_list(registry, "stable.example.com", "v1beta1")
    assert v1 is not None and v1beta1 is not None
    assert v1["resources"][0]["storageVersionHash"] == v1beta1["resources"][0]["storageVersionHash"]


def test_resource_list_is_none_for_an_unknown_group_version() -> None:
    assert discovery.resource_list(_registry(), "apps", "v1beta1") is None


def test_aggregated_apis_nests_subresources_under_resources() -> None:
    doc = discovery.aggregated(_registry(), False, "v2")
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    groups = {item["metadata"].get("name"): item for item in doc["items"]}
    assert list(groups) == ["apps", "stable.example.com"]
    (version,) = groups["apps"]["versions"]
    assert (version["version"], version["freshness"]) == ("v1", "Current")
    deployments = _by_name(version["resources"], "resource")["deployments"]
    assert deployments["responseKind"] == {"group": "", "version": "", "kind": "Deployment"}
    assert deployments["scope"] == "Namespaced"
    assert deployments["singularResource"] == "deployment"
    assert deployments["shortNames"] == ["deploy"] and deployments["categories"] == ["all"]
    subresources = _by_name(deployments["subresources"], "subresource")
    assert subresources["scale"] == {
        "subresource": "scale",
        "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "verbs": ["get", "patch", "update"],
    }
    assert subresources["status"]["responseKind"]["kind"] == "Deployment"


def test_aggregated_api_holds_only_the_core_group() -> None:
    doc = discovery.aggregated(_registry(), True, "v2beta1")
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    (core,) = doc["items"]
    assert "name" not in core["metadata"]
    resources = _by_name(core["versions"][0]["resources"], "resource")
    assert resources["namespaces"]["scope"] == "Cluster"
    finalize = _by_name(resources["namespaces"]["subresources"], "subresource")["finalize"]
    assert finalize["verbs"] == ["update"]


def test_aggregated_lists_every_version_of_a_group_preferred_first() -> None:
    doc = discovery.aggregated(_registry(), False, "v2")
    stable = next(i for i in doc["items"] if i["metadata"]["name"] == "stable.example.com")
    assert [v["version"] for v in stable["versions"]] == ["v1", "v1beta1"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (KUBECTL_ACCEPT, ("v2", V2_CONTENT_TYPE)),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json",
            ("v2beta1", V2_CONTENT_TYPE.replace("v=v2", "v=v2beta1")),
        ),
        (
            "application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io",
            ("v2", V2_CONTENT_TYPE),
        ),
        (
            "application/json;q=0.9,"
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            ("v2", V2_CONTENT_TYPE),
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            ("v2", V2_CONTENT_TYPE),
        ),
        ("application/json", None),
        ("application/json, */*", None),
        ("", None),
        (
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            None,
        ),
        (
            "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            None,
        ),
    ],
)
def test_negotiate(accept: str, expected: tuple[str, str] | None) -> None:
    assert discovery.negotiate(accept) == expected


def test_documents_are_cached_until_the_registry_changes() -> None:
    registry = _registry()
    first = discovery.aggregated(registry, False, "v2")
    assert discovery.aggregated(registry, False, "v2") is first
    registry.add(ResourceType("batch", "v1", "Job", "jobs", "job", True))
    groups = [
        item["metadata"]["name"] for item in discovery.aggregated(registry, False, "v2")["items"]
    ]
    assert "batch" in groups
    assert discovery.resource_list(registry, "batch", "v1") is not None


def test_unknown_subresources_are_read_only_views_of_their_parent() -> None:
    sub = discovery.subresource("whatever")
    assert sub.verbs == ("get",)
    parent = ResourceType("", "v1", "Node", "nodes", "node", False)
    assert discovery.subresource("proxy").response_kind(parent) == "NodeProxyOptions"


def test_builtin_kinds_in_aggregated_discovery() -> None:
    registry = Registry()
    kinds.register_builtins(registry)
    core = discovery.aggregated(registry, True, "v2")["items"][0]["versions"][0]["resources"]
    assert {"pods", "namespaces", "configmaps"} <= set(_by_name(core, "resource"))
    apps = discovery.aggregated(registry, False, "v2")["items"][0]
    assert apps["metadata"]["name"] == "apps"
    deployments = _by_name(apps["versions"][0]["resources"], "resource")["deployments"]
    scale = _by_name(deployments["subresources"], "subresource")["scale"]
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
