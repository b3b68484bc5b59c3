"""unistack.controlplane.manifests: the objects `unistack manifests` prints, checked as data."""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from unistack.cli import main as cli
from unistack.client import kubeconfig
from unistack.controlplane import accounts, kind, manifests, presets, render

Obj = dict[str, Any]

OPTIONS = manifests.Options("2.1.0", "small", "unistack-system", "registry.example:5000")
CREDENTIALS = manifests.Credentials("s3cret", (b"key-0", b"key-1"))
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
WORKLOADS = {"Deployment", "DaemonSet"}


def _objects(options: manifests.Options = OPTIONS) -> list[Obj]:
    return manifests.manifests(options, CREDENTIALS)


def _of(objects: list[Obj], kind_name: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind_name]


def _pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def _named(objects: list[Obj], kind_name: str, name: str) -> Obj:
    return next(o for o in _of(objects, kind_name) if o["metadata"]["name"] == name)


# --- shape --------------------------------------------------------------------------------------


def test_every_object_is_named_and_placed() -> None:
    objects = _objects()
    keys = set()
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, obj["metadata"]
        else:
            assert namespace == "unistack-system", obj["metadata"]
        keys.add((obj["kind"], namespace, obj["metadata"]["name"]))
    assert len(keys) == len(objects)  # no object twice
    assert objects[0]["kind"] == "Namespace"  # apply order: the namespace, then the CRDs
    assert {o["kind"] for o in objects[1:40]} == {"CustomResourceDefinition"}


def test_another_namespace_moves_every_namespaced_object() -> None:
    objects = _objects(manifests.Options("2.1.0", namespace="cloud"))
    placed = {o["metadata"].get("namespace") for o in objects if o["kind"] not in CLUSTER_SCOPED}
    assert placed == {"cloud"}
    subjects = {s["namespace"] for b in _of(objects, "ClusterRoleBinding") for s in b["subjects"]}
    assert subjects == {"cloud"}
    assert _of(objects, "Namespace")[0]["metadata"]["name"] == "cloud"


def test_a_crd_for_every_iaas_kind_and_the_controlplane() -> None:
    crds = _of(_objects(), "CustomResourceDefinition")
    names = [crd["metadata"]["name"] for crd in crds]
    assert len(names) == len(set(names)) == len(manifests.IAAS_KINDS) + 1
    for group, plural in [
        ("compute.unistack.io", "servers"),
        ("network.unistack.io", "ports"),
        ("volume.unistack.io", "volumes"),
        ("image.unistack.io", "images"),
        ("identity.unistack.io", "projects"),
        (kind.GROUP, kind.PLURAL),
    ]:
        assert f"{plural}.{group}" in names
    assert crds[-1] == kind.definition()


def test_yaml_stream_round_trips() -> None:
    objects = _objects()
    assert list(yaml.safe_load_all(manifests.to_yaml(objects))) == objects


# --- references -----------------------------------------------------------------------------------


def test_every_service_account_referenced_exists() -> None:
    objects = _objects()
    accounts = {o["metadata"]["name"] for o in _of(objects, "ServiceAccount")}
    for name, pod in _pod_specs(objects):
        assert pod.get("serviceAccountName") in accounts, name
    roles = {o["metadata"]["name"] for o in _of(objects, "ClusterRole")}
    for binding in _of(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] in roles
        assert all(s["name"] in accounts for s in binding["subjects"])


def test_mounted_volumes_exist_and_name_objects_present() -> None:
    objects = _objects()
    config_maps = {o["metadata"]["name"] for o in _of(objects, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in _of(objects, "Secret")}
    claims = {o["metadata"]["name"] for o in _of(objects, "PersistentVolumeClaim")}
    for name, pod in _pod_specs(objects):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert {m["name"] for m in container["volumeMounts"]} <= set(volumes), name
        for volume in volumes.values():
            assert "hostPath" not in volume or name == manifests.AGENT, (name, volume)
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_pods_read_a_kubeconfig_of_their_service_account(tmp_path: Path) -> None:
    credentials = _named(_objects(), "Secret", render.CREDENTIALS_SECRET)["data"]
    text = base64.b64decode(credentials["kubeconfig"]).decode()
    assert f"{kubeconfig.SERVICE_ACCOUNT_DIR}/token" in text
    # where the kubelet would mount the ServiceAccount's token, a temp dir stands in
    (tmp_path / "token").write_text("pod-token\n")
    document = yaml.safe_load(text.replace(kubeconfig.SERVICE_ACCOUNT_DIR, str(tmp_path)))
    context = kubeconfig.parse(document, "/")
    assert context.server == "https://kubernetes.default.svc"
    assert context.token == "pod-token"
    assert context.ca_file == f"{tmp_path}/ca.crt"
    assert context.namespace == "unistack-system"
    assert base64.b64decode(credentials["admin-password"]) == b"s3cret"
    keys = _named(_objects(), "Secret", render.FERNET_SECRET)["data"]
    assert {k: base64.b64decode(v) for k, v in keys.items()} == {"0": b"key-0", "1": b"key-1"}


def test_without_credentials_no_secret_is_printed() -> None:
    objects = manifests.manifests(OPTIONS, None)
    assert not _of(objects, "Secret")
    assert len(objects) == len(_objects()) - 2


def test_settings_keep_the_operator_off() -> None:
    config = _named(_objects(), "ConfigMap", render.CONFIG_MAP)
    assert yaml.safe_load(config["data"]["settings.json"])["host"]["control_plane"] == "processes"


# --- images, sizes, processes -------------------------------------------------------------------


@pytest.mark.parametrize("release", ["2.1.0", "2.2.0-rc1"])
def test_every_image_is_the_release_from_the_registry(release: str) -> None:
    objects = _objects(manifests.Options(release, registry="registry.example:5000"))
    images = {
        container["image"]
        for _, pod in _pod_specs(objects)
        for container in (*pod["containers"], *pod.get("initContainers", []))
    }
    assert images == {f"registry.example:5000/unistack/controlplane:{release}"}
    assert _of(objects, "ControlPlane")[0]["spec"]["release"] == release


@pytest.mark.parametrize("size", kind.SIZES)
def test_size_presets_set_the_replicas(size: str) -> None:
    objects = _objects(manifests.Options("2.1.0", size))
    expected = presets.REPLICAS[size]
    for service in presets.SERVICES:
        # a real cluster has its own DNS and registry; the gateway is `manifests.GATEWAY`,
        # behind a Service
        if service.component in (presets.DNS, presets.REGISTRY, presets.GATEWAY):
            assert not [o for o in objects if o["metadata"]["name"] == service.deployment]
            continue
        replicas = _named(objects, "Deployment", service.deployment)["spec"]["replicas"]
        if service.component == presets.API:
            assert replicas == expected
        else:
            assert replicas == presets.CONTROLLER_REPLICAS[size]
    assert _named(objects, "Deployment", manifests.GATEWAY)["spec"]["replicas"] == expected
    assert _of(objects, "ControlPlane")[0]["spec"]["size"] == size


def test_api_deployments_are_the_operators_rendering() -> None:
    objects = _objects()
    rendered = render.render(manifests.controlplane(OPTIONS), manifests.environment(OPTIONS))
    for obj in rendered:
        if obj["metadata"]["name"] in ("dns", "registry", "gateway"):  # the cluster's own, ours
            continue
        assert _named(objects, obj["kind"], obj["metadata"]["name"]) == obj
    pod = _named(objects, "Deployment", "image-api")["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert {"name": "images", "persistentVolumeClaim": {"claimName": "unistack-images"}} in (
        pod["volumes"]
    )
    command = pod["containers"][0]["command"]
    internal = command[command.index("--internal-url") + 1]
    assert internal == "http://unistack-gateway.unistack-system.svc:8080"


def test_each_process_runs_its_serve_command() -> None:
    objects = _objects()
    commands = {
        name: pod["containers"][0]["command"][3:5]
        for name, pod in _pod_specs(objects)
        if not name.endswith("-api")
    }
    assert commands == {
        manifests.CONTROLLERS: ["serve", "controllers"],
        manifests.GATEWAY: ["serve", "gateway"],
        manifests.AGENT: ["serve", "agent"],
    }
    gateway = _named(objects, "Service", manifests.GATEWAY)
    assert gateway["spec"]["selector"] == {"app.kubernetes.io/name": manifests.GATEWAY}


def test_the_agent_runs_privileged_on_the_hosts_network_and_pids() -> None:
    agent = _named(_objects(), "DaemonSet", manifests.AGENT)["spec"]["template"]["spec"]
    assert agent["hostNetwork"] and agent["hostPID"]
    assert agent["dnsPolicy"] == "ClusterFirstWithHostNet"
    container = agent["containers"][0]
    assert container["securityContext"] == {"privileged": True}
    assert "limits" not in container["resources"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/run", "/sys", "/dev", "/lib/modules", f"{render.STATE_DIR}/agent"):
        assert path in mounts
    assert mounts["/run"]["mountPropagation"] == "Bidirectional"


# --- RBAC -----------------------------------------------------------------------------------------


def _allows(role: Obj, group: str, resource: str, verb: str) -> bool:
    """Kubernetes' RBAC rule matching: `*` matches any group, resource or verb."""
    for rule in role["rules"]:
        if (
            ({"*", group} & set(rule["apiGroups"]))
            and ({"*", resource} & set(rule["resources"]))
            and ({"*", verb} & set(rule["verbs"]))
        ):
            return True
    return False


# What each process does through the API (read from its code: informers, writes, leases).
TOUCHES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "api": [
        ("apiextensions.k8s.io", "customresourcedefinitions", ("create", "get", "list")),
        ("", "namespaces", ("create", "get")),
        ("", "nodes", ("list", "watch", "patch")),
        ("", "nodes/proxy", ("get", "create", "update", "delete")),  # agentdriver, agentbackend
        ("coordination.k8s.io", "leases", ("get", "create", "update")),
        ("", "events", ("create",)),
    ],
    "controllers": [
        ("", "pods", ("create", "delete", "list", "watch")),
        ("", "pods/binding", ("create",)),
        ("apps", "replicasets", ("create", "update", "patch", "delete")),
        ("apps", "deployments/status", ("update",)),
        ("discovery.k8s.io", "endpointslices", ("create", "update", "delete")),
        ("", "persistentvolumes", ("create", "update")),
        ("", "namespaces/finalize", ("update",)),
        ("", "serviceaccounts", ("create",)),
        ("", "configmaps", ("create", "update")),
        ("coordination.k8s.io", "leases", ("get", "create", "update")),
        ("compute.unistack.io", "servers", ("list", "delete")),
    ],
    "gateway": [("", "services", ("list", "watch")), ("", "endpoints", ("list", "watch"))],
    "dns": [("", "services", ("list", "watch")), ("discovery.k8s.io", "endpointslices", ("list",))],
    "agent": [
        ("", "nodes", ("get", "create", "update")),
        ("", "nodes/status", ("update",)),
        ("", "pods", ("list", "watch", "delete")),
        ("", "pods/status", ("patch",)),
        ("", "secrets", ("get",)),
        ("", "configmaps", ("get",)),
        ("", "persistentvolumeclaims", ("get",)),
        ("", "persistentvolumes", ("get",)),
        ("", "serviceaccounts/token", ("create",)),
        ("", "services", ("get",)),
        ("discovery.k8s.io", "endpointslices", ("list", "watch")),
        ("coordination.k8s.io", "leases", ("get", "create", "update")),
        ("network.unistack.io", "ports", ("create", "patch", "delete", "watch")),
        ("network.unistack.io", "allocations", ("create", "delete")),
        ("compute.unistack.io", "servers/status", ("update", "patch")),
        ("", "events", ("create",)),
    ],
}


@pytest.mark.parametrize("component", sorted(TOUCHES))
def test_rbac_covers_what_each_component_touches(component: str) -> None:
    role = _named(accounts.rbac(kind.NAMESPACE), "ClusterRole", f"unistack-{component}")
    for group, resource, verbs in TOUCHES[component]:
        for verb in verbs:
            assert _allows(role, group, resource, verb), (component, group, resource, verb)


def test_the_api_may_do_anything_with_every_iaas_kind_and_nothing_else_wide() -> None:
    role = _named(_objects(), "ClusterRole", "unistack-api")
    for iaas in manifests.IAAS_KINDS:
        for verb in accounts.EVERY_VERB:
            assert _allows(role, iaas.group, iaas.plural, verb)
        assert _allows(role, iaas.group, f"{iaas.plural}/status", "update")
    assert not _allows(role, "", "secrets", "get")
    assert not _allows(role, "apps", "deployments", "create")
    assert not _allows(role, kind.GROUP, kind.PLURAL, "update")


def test_the_gateway_only_reads() -> None:
    role = _named(_objects(), "ClusterRole", "unistack-gateway")
    assert not _allows(role, "", "services", "update")
    assert not _allows(role, "", "secrets", "get")


# --- the command ------------------------------------------------------------------------------


def test_the_command_writes_a_private_file(tmp_path: Path) -> None:
    output = tmp_path / "unistack.yaml"
    argv = ["manifests", "--release", "3.0.0", "--size", "ha", "--output", str(output)]
    assert cli.main([*argv, "--registry", "reg.example:5000"]) == 0
    objects = list(yaml.safe_load_all(output.read_text()))
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert _of(objects, "ControlPlane")[0]["spec"] == {"release": "3.0.0", "size": "ha"}
    assert len(_of(objects, "Secret")) == 2


def test_the_command_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["manifests", "--no-secrets"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert objects[0]["kind"] == "Namespace" and not _of(objects, "Secret")


@pytest.mark.parametrize(
    "argv",
    [
        ["--release", "bad tag"],
        ["--size", "huge"],
        ["--namespace", "Not_A_Namespace"],
        ["--registry", "bad registry"],
    ],
)
def test_the_command_rejects_bad_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["manifests", *argv])
    assert exited.value.code == 2
