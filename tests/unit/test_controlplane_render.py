"""The control plane's rendering and the operator's decisions, without I/O."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from unistack.controlplane import kind, operator, presets, render, upgrade

Obj = dict[str, Any]
ENV = render.Environment(
    registry="127.0.0.1:5000",
    internal_url="http://10.244.0.1:8080",
    images_dir="/state/images",
    node_name="node-1",
)


def controlplane(release: str = "1.0", size: str = "single", **services: Obj) -> Obj:
    obj = kind.new(release, size)
    obj["metadata"].update(uid="cp-uid", generation=1)
    if services:
        obj["spec"]["services"] = services
    return obj


def by_name(objects: list[Obj], kind_name: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind_name}


def test_every_api_gets_a_deployment_and_a_routed_service() -> None:
    objects = render.render(controlplane(), ENV)
    deployments, services = by_name(objects, "Deployment"), by_name(objects, "Service")
    names = {f"{s.name}-api" for s in presets.SERVICES if s.component == presets.API}
    assert set(deployments) == {*names, "dns", "registry", "gateway", "controllers"}
    assert names == set(services)
    compute = deployments["compute-api"]
    pod = compute["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "127.0.0.1:5000/unistack/controlplane:1.0"
    assert container["command"][container["command"].index("--services") + 1] == "compute"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "node-1"}
    assert compute["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    route = services["compute-api"]["metadata"]
    assert route["annotations"][render.GATEWAY_PATH] == "/compute"
    assert route["labels"][render.GATEWAY_LABEL] == "true"
    assert compute["metadata"]["ownerReferences"][0]["uid"] == "cp-uid"


def test_the_gateway_runs_on_the_nodes_network_at_the_openstack_port() -> None:
    env = render.Environment(**{**vars(ENV), "gateway_port": 18080})
    gateway = by_name(render.render(controlplane(size="small"), env), "Deployment")["gateway"]
    assert gateway["spec"]["replicas"] == 2
    pod = gateway["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "node-1"}  # where clients go
    container = pod["containers"][0]
    assert container["command"][3:5] == ["serve", "gateway"]
    assert container["command"][-3:] == ["--in-pod", "--port", "18080"]
    assert "ports" not in container  # replicas share the port: none may claim it
    probe = container["readinessProbe"]["exec"]
    assert probe == render.heartbeat_probe(render.GATEWAY_HEARTBEAT, 5)["exec"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {f"{render.STATE_DIR}/settings.json", f"{render.STATE_DIR}/kubeconfig"}


def test_the_registry_runs_on_the_nodes_network_over_the_hosts_image_store() -> None:
    registry = by_name(render.render(controlplane(size="small"), ENV), "Deployment")["registry"]
    assert registry["spec"]["replicas"] == 2
    pod = registry["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "node-1"}  # where the store is
    container = pod["containers"][0]
    assert container["command"][3:] == [
        "serve", "registry", "--state-dir", render.STATE_DIR, "--in-pod",
    ]  # fmt: skip
    assert "ports" not in container  # replicas share the port: none may claim it
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"] and render.REGISTRY_HEARTBEAT in probe[2]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["images"] == f"{render.STATE_DIR}/images"
    images = next(v for v in pod["volumes"] if v["name"] == "images")
    assert images["hostPath"]["path"] == ENV.images_dir
    assert "credentials" not in mounts  # it never calls the API


def test_the_controllers_run_as_pods_with_the_volumes_at_their_host_path() -> None:
    env = render.Environment(**{**vars(ENV), "volumes_dir": "/state/volumes"})
    controllers = by_name(render.render(controlplane(size="small"), env), "Deployment")
    controllers_pod = controllers["controllers"]["spec"]["template"]["spec"]
    container = controllers_pod["containers"][0]
    assert container["command"][3:5] == ["serve", "controllers"]
    assert "--bootstrap" not in container["command"]  # the supervisor's process is the bootstrap
    assert container["command"][-2:] == ["--volumes-dir", "/state/volumes"]
    assert {"name": "volumes", "mountPath": "/state/volumes"} in container["volumeMounts"]
    assert {"name": "volumes", "hostPath": {"path": "/state/volumes",
            "type": "DirectoryOrCreate"}} in controllers_pod["volumes"]  # fmt: skip
    assert "ports" not in container and "livenessProbe" not in container
    probe = container["readinessProbe"]
    assert probe["exec"] == render.heartbeat_probe(render.CONTROLLERS_HEARTBEAT, 10)["exec"]
    assert controllers["controllers"]["spec"]["replicas"] == 2  # a leader and a standby
    labels = controllers["controllers"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "controllers"
    assert labels["app.kubernetes.io/part-of"] == "unistack"  # chaos picks them too
    # no host directory: the pod's own (a real cluster's manifests)
    bare = by_name(render.render(controlplane(), ENV), "Deployment")["controllers"]
    assert {"name": "volumes", "emptyDir": {}} in bare["spec"]["template"]["spec"]["volumes"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_the_heartbeat_probe_passes_only_on_a_fresh_file(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"

    def probe() -> int:
        command = render.heartbeat_probe(str(beat), 10)["exec"]["command"]
        return subprocess.run(command, capture_output=True, check=False).returncode

    assert probe() != 0  # no beat yet
    beat.touch()
    assert probe() == 0
    stale = time.time() - 11
    os.utime(beat, (stale, stale))
    assert probe() != 0


def test_dns_runs_as_pods_that_publish_themselves_and_ask_the_nodes_resolvers() -> None:
    dns = by_name(render.render(controlplane(size="small"), ENV), "Deployment")["dns"]
    pod = dns["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][3:5] == ["serve", "dns"] and "--in-pod" in container["command"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 53}
    assert pod["dnsPolicy"] == "Default"  # not itself
    assert dns["spec"]["replicas"] == 2
    services = by_name(render.render(controlplane(), ENV), "Service")
    assert "dns" not in services  # pods find it as kube-system/kube-dns


def dns_pod(name: str, ip: str, ready: bool = True, going: bool = False) -> Obj:
    meta: Obj = {"name": name, "namespace": "unistack-system", "uid": f"uid-{name}"}
    if going:
        meta["deletionTimestamp"] = "2026-11-24T10:00:00Z"
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [condition]}}


def test_kube_dns_lists_the_ready_dns_pods_that_are_not_going_away() -> None:
    pods = [
        dns_pod("b", "10.0.0.9"),
        dns_pod("a", "10.0.0.3"),
        dns_pod("c", "10.0.0.4", False),
        dns_pod("d", "10.0.0.5", going=True),
        {"metadata": {"name": "e"}, "status": {}},
    ]
    found = render.dns_endpoint_slice(pods)  # fmt: skip
    assert [e["addresses"] for e in found["endpoints"]] == [["10.0.0.3"], ["10.0.0.9"]]
    assert found["endpoints"][0]["targetRef"]["name"] == "a"
    assert found["metadata"]["namespace"] == "kube-system"
    assert found["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert {(p["name"], p["port"]) for p in found["ports"]} == {("dns", 53), ("dns-tcp", 53)}
    service = render.dns_service("10.96.0.10")
    assert service["spec"]["clusterIP"] == "10.96.0.10" and "selector" not in service["spec"]


def test_the_environment_travels_in_the_config_map() -> None:
    env = render.Environment(**{**vars(ENV), "volumes_dir": "/state/volumes"})
    config_map = render.settings_config_map("unistack-system", "{}\n", env)
    assert render.Environment.from_json(config_map["data"][render.ENVIRONMENT_KEY]) == env


def test_size_presets_and_overrides_set_replicas() -> None:
    def replicas(cp: Obj) -> dict[str, int]:
        found = by_name(render.render(cp, ENV), "Deployment")
        return {name: d["spec"]["replicas"] for name, d in found.items()}

    assert set(replicas(controlplane(size="single")).values()) == {1}
    assert set(replicas(controlplane(size="ha")).values()) == {3, 2}  # the controllers: 2
    small = replicas(controlplane(size="small", compute={"replicas": 4}))
    assert small["compute-api"] == 4 and small["identity-api"] == 2


def test_a_new_release_changes_the_hash_and_the_image() -> None:
    old = by_name(render.render(controlplane("1.0"), ENV), "Deployment")["image-api"]
    new = by_name(render.render(controlplane("1.1"), ENV), "Deployment")["image-api"]
    key = render.RENDERED_HASH
    assert old["metadata"]["annotations"][key] != new["metadata"]["annotations"][key]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.1")


def test_plan_creates_patches_and_deletes_only_what_it_owns() -> None:
    desired = render.render(controlplane("1.1"), ENV)
    stored = copy.deepcopy(render.render(controlplane("1.0"), ENV))
    stored = [o for o in stored if o["metadata"]["name"] != "volume-api"]  # missing
    same = next(o for o in stored if o["kind"] == "Service")  # unchanged apart from release
    stray_owned = copy.deepcopy(same)
    stray_owned["metadata"]["name"] = "old-api"
    stray_foreign = copy.deepcopy(stray_owned)
    stray_foreign["metadata"]["name"] = "someone-else"
    stray_foreign["metadata"]["ownerReferences"] = [{"uid": "other"}]
    changes = operator.plan(desired, [*stored, stray_owned, stray_foreign], "cp-uid")
    verbs = {(c.verb, c.obj["kind"], c.obj["metadata"]["name"]) for c in changes}
    assert ("create", "Deployment", "volume-api") in verbs
    assert ("create", "Service", "volume-api") in verbs
    assert ("patch", "Deployment", "compute-api") in verbs  # the release moved
    assert ("delete", "Service", "old-api") in verbs
    assert not any(name == "someone-else" for _, _, name in verbs)
    assert operator.plan(desired, copy.deepcopy(desired), "cp-uid") == []


def ready(deployment: Obj, ready_replicas: int) -> Obj:
    deployment = copy.deepcopy(deployment)
    replicas = deployment["spec"]["replicas"]
    deployment["metadata"]["generation"] = 2
    deployment["status"] = {
        "observedGeneration": 2,
        "readyReplicas": ready_replicas,
        "updatedReplicas": replicas,
        "replicas": replicas,
    }
    return deployment


def test_status_reports_ready_over_desired_and_the_release() -> None:
    cp = controlplane("1.0", "small")
    deployments = by_name(render.render(cp, ENV), "Deployment")
    all_ready = {name: ready(d, 2) for name, d in deployments.items()}
    status = operator.status_of(cp, all_ready)
    assert status["phase"] == "Ready" and status["ready"] == "9/9"
    assert status["release"] == "1.0" and "upgrade" not in status  # a first start
    cp["status"] = {"release": "0.9"}
    assert status["services"]["compute"] == {
        "ready": 2, "desired": 2, "updated": 2, "release": "1.0", "healthy": True,
    }  # fmt: skip
    one_down = {**all_ready, "network-api": ready(deployments["network-api"], 1)}
    degraded = operator.status_of(cp, one_down)
    assert degraded["phase"] == "Progressing" and degraded["ready"] == "8/9"
    assert degraded["release"] == "0.9"  # not all of it runs 1.0 yet
    missing = operator.status_of(cp, {})
    assert missing["ready"] == "0/9" and missing["services"]["identity"]["desired"] == 0


def test_a_new_release_rolls_through_the_services_in_order() -> None:
    old = controlplane("1.0", "small")
    deployments = {
        n: ready(d, 2) for n, d in by_name(render.render(old, ENV), "Deployment").items()
    }
    new = controlplane("1.1", "small")
    new["status"] = {"release": "1.0"}
    assert operator.rollout(new, deployments) == {
        "identity": "1.1", "image": "1.0", "network": "1.0", "volume": "1.0", "compute": "1.0",
        "dns": "1.0", "registry": "1.0", "gateway": "1.0", "controllers": "1.0",
    }  # fmt: skip
    # identity runs 1.1 and is healthy: image is next; the others wait
    rolled = by_name(render.render(new, ENV, {"identity": "1.1"}), "Deployment")
    deployments["identity-api"] = ready(rolled["identity-api"], 2)
    assert operator.rollout(new, deployments)["image"] == "1.1"
    assert operator.rollout(new, deployments)["network"] == "1.0"
    status = operator.status_of(new, deployments, now=100.0)
    upgrade = status["upgrade"]
    assert upgrade["from"] == "1.0" and upgrade["to"] == "1.1" and upgrade["phase"] == "InProgress"
    assert upgrade["steps"]["identity"]["finishedAt"] == 100.0
    assert status["release"] == "1.0" and status["phase"] == "Progressing"
    # everything at 1.1: the upgrade completes with its duration
    final = by_name(render.render(new, ENV), "Deployment")
    new["status"] = status
    done = operator.status_of(new, {n: ready(d, 2) for n, d in final.items()}, now=160.0)
    assert done["upgrade"]["phase"] == "Complete" and done["release"] == "1.1"
    assert done["upgrade"]["seconds"] == 60.0


def pod_ready_after(
    name: str, api: str, seconds: int, created: int = 0, node: str = "node-a"
) -> Obj:
    return {
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": f"{api}-api"},
            "creationTimestamp": f"2026-11-24T10:00:{created:02d}Z",
        },
        "spec": {"nodeName": node},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True",
                 "lastTransitionTime": f"2026-11-24T10:00:{created + seconds:02d}Z"},
            ]
        },
    }  # fmt: skip


def test_upgrade_plan_estimates_from_history_then_pods_then_a_default() -> None:
    cp = controlplane("1.0", "small", compute={"replicas": 3})
    deployments = by_name(render.render(cp, ENV), "Deployment")
    pods = [
        pod_ready_after("i1", "identity", 9, created=20),  # alone on its node
        pod_ready_after("i2", "identity", 4, created=40, node="node-b"),  # alone: 4 s
    ]
    history = {"phase": "Complete", "steps": {"network": {"seconds": 9.0, "replicas": 2}}}
    nodes = [
        {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu}}}
        for name, cpu in (("node-a", "2"), ("node-b", "2000m"))
    ]
    cores = upgrade.cores_of(nodes)
    assert cores == {"node-a": 2.0, "node-b": 2.0}
    steps = {s.service: s for s in upgrade.plan(deployments, pods, history, cores)}
    assert [s.service for s in upgrade.plan(deployments, pods)] == [
        "identity", "image", "network", "volume", "compute", "dns", "registry", "gateway",
        "controllers",
    ]  # fmt: skip
    assert steps["identity"].ready_seconds == 4.0 + render.MIN_READY_SECONDS  # the quickest pod
    assert steps["identity"].estimate == 2 * (4.0 + render.MIN_READY_SECONDS) + upgrade.HANDOVER
    assert steps["network"].ready_seconds == (9.0 - upgrade.HANDOVER) / 2  # the last upgrade
    assert steps["compute"].ready_seconds == upgrade.DEFAULT_READY + render.MIN_READY_SECONDS
    assert not steps["compute"].measured and steps["compute"].replicas == 3
    assert steps["compute"].impact.startswith("none")
    # started at once: four pods on a 2-core node each took twice what one alone takes
    burst = [
        pod_ready_after(f"b{n}", api, 8)
        for n, api in enumerate(("identity", "image", "network", "volume"))
    ]
    burst.append(pod_ready_after("elsewhere", "volume", 3, node="node-b"))  # on its own node
    started = {s.service: s for s in upgrade.plan(deployments, burst, None, cores)}
    assert started["identity"].ready_seconds == 8 * 2 / 4 + render.MIN_READY_SECONDS
    assert started["volume"].ready_seconds == 3 + render.MIN_READY_SECONDS
    assert started["compute"].ready_seconds == upgrade.DEFAULT_READY + render.MIN_READY_SECONDS
    # one core, nothing beside it: the time it took
    alone = upgrade.plan(deployments, [pod_ready_after("one", "image", 5)], None, {})
    assert alone[1].ready_seconds == 5 + render.MIN_READY_SECONDS
    assert steps["controllers"].impact.startswith("none")  # a standby takes over
    assert steps["controllers"].deployment == "controllers"
    single = upgrade.plan(by_name(render.render(controlplane(), ENV), "Deployment"), [])
    assert all(step.impact.startswith("API blips") for step in single[:-4])
    assert single[-4].impact == "DNS blips (one replica)"
    # old and new registry and gateway pods share their port
    assert single[-3].impact.startswith("none") and single[-2].impact.startswith("none")
    assert single[-1].impact == "controllers pause while one restarts"
    assert upgrade.total(single) == sum(s.estimate for s in single)


def test_a_deployment_mid_rollout_is_not_healthy() -> None:
    deployment = by_name(render.render(controlplane(), ENV), "Deployment")["network-api"]
    rolling = ready(deployment, 1)
    rolling["status"].update(replicas=2, updatedReplicas=1)  # the old pod is still there
    assert not operator.service_status(rolling)["healthy"]
    assert operator.service_status(ready(deployment, 1))["healthy"]


def test_what_the_pods_mount_decodes_back_to_the_files() -> None:
    config_map = render.settings_config_map("unistack-system", '{"host": {}}\n')
    assert config_map["metadata"]["name"] == render.CONFIG_MAP
    assert config_map["data"] == {"settings.json": '{"host": {}}\n'}
    credentials, keys = render.credential_secrets(
        "unistack-system", b"apiVersion: v1\n", b"s3cret", {"0": b"key-0", "1": b"key-1"}
    )
    assert (credentials["metadata"]["name"], keys["metadata"]["name"]) == (
        render.CREDENTIALS_SECRET,
        render.FERNET_SECRET,
    )

    def files(secret: dict) -> dict:
        return {k: base64.b64decode(v) for k, v in secret["data"].items()}

    assert files(credentials) == {"kubeconfig": b"apiVersion: v1\n", "admin-password": b"s3cret"}
    assert files(keys) == {"0": b"key-0", "1": b"key-1"}


def test_a_pinned_environment_names_the_image_by_digest_too() -> None:
    digest = "sha256:" + "c" * 64
    env = render.Environment(**{**vars(ENV), "pin_images": True, "digests": {"1.0": digest}})
    deployments = by_name(render.render(controlplane("1.0"), env), "Deployment")
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments.values()}
    assert images == {f"127.0.0.1:5000/unistack/controlplane:1.0@{digest}"}
    # the controllers (the operator) read the digests from the image store, read-only
    pod = deployments["controllers"]["spec"]["template"]["spec"]
    mount = {"name": "images", "mountPath": render.IMAGES_AT, "readOnly": True}
    assert mount in pod["containers"][0]["volumeMounts"]
    assert {"name": "images", "hostPath": {"path": "/state/images",
            "type": "DirectoryOrCreate"}} in pod["volumes"]  # fmt: skip
    # a release without a digest (not stored yet), or a real cluster's: by tag alone
    assert render.Environment(**{**vars(env), "digests": {}}).image("1.0").endswith(":1.0")
    bare = by_name(render.render(controlplane("1.0"), ENV), "Deployment")["controllers"]
    assert "images" not in {v["name"] for v in bare["spec"]["template"]["spec"]["volumes"]}
