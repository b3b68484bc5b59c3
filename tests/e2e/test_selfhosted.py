"""The control plane hosts itself: `unistack up --control-plane pods` runs every OpenStack API
as a Deployment in `unistack-system`, rendered from one ControlPlane, behind HAProxy; cluster
DNS, the HAProxy gateway and the controllers (Kubernetes controllers, scheduler, the
operator) are Deployments too, the gateway and the controllers taking over from the
supervisor's bootstrap.

kubectl sees the pods and the ControlPlane's status; the openstack CLI works through the
gateway; deleting the leading controllers pod, the work goes on; an override scales a
service; `unistack chaos` deleting pods of two-replica services under load fails no request
while the openstack CLI and kubectl are in use; and an upgrade under load fails none. Needs
root, runc and haproxy.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import (
    UNISTACK,
    Cluster,
    free_port,
    live_pods,
    start_cluster,
    wait_for,
)
from unistack import __version__
from unistack.cli.chaos import cloud_of
from unistack.cli.kubeconfig import load_access
from unistack.cli.statedir import StateDir
from unistack.verify import load as loadgen

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("haproxy") is None,
        reason="control-plane pods need root and runc, the gateway haproxy",
    ),
]
NS = "unistack-system"
APIS = ("identity", "image", "network", "volume", "compute")
CONTROLLERS = "app.kubernetes.io/name=controllers"
GATEWAY = "app.kubernetes.io/name=gateway"
LEASES = ("unistack-controllers", "unistack-controlplane-operator")


@pytest.fixture(scope="module")
def selfhosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("unistack-selfhost")
    running = start_cluster(state, free_port(), "self", "--control-plane", "pods")
    try:
        yield running
    finally:
        running.unistack("down")


def ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(cluster: Cluster, api: str) -> list[dict]:
    pods = live_pods(cluster, NS, f"app.kubernetes.io/name={api}-api")
    return [pod for pod in pods if ready(pod)]


def controlplane(cluster: Cluster) -> dict:
    return json.loads(
        cluster.kubectl("-n", NS, "get", "controlplane", "unistack", "-o", "json").stdout
    )


def rally_load(cluster: Cluster, workers: int = 5) -> loadgen.Load:
    """`unistack chaos`'s Rally-style load (reads, network and ConfigMap create/delete) on the
    cluster, as its admin; a context manager that cleans up what it made."""
    state = StateDir.at(cluster.state_dir)
    return loadgen.Load(cloud_of(state, load_access(state.kubeconfig)), workers=workers)


def test_the_apis_run_as_pods_rendered_from_the_controlplane(selfhosted: Cluster) -> None:
    for api in APIS:
        wait_for(lambda api=api: len(ready_pods(selfhosted, api)) == 1, f"{api}-api ready")
    wait_for(lambda: controlplane(selfhosted).get("status", {}).get("phase") == "Ready", "Ready")
    status = controlplane(selfhosted)["status"]
    assert status["ready"] == "9/9" and status["release"] == __version__
    table = selfhosted.kubectl("-n", NS, "get", "controlplanes").stdout
    assert "unistack" in table and "9/9" in table and "Ready" in table
    # cluster DNS is pods too, each published in kube-system/kube-dns by itself
    dns_pods = [p for p in live_pods(selfhosted, NS, "app.kubernetes.io/name=dns") if ready(p)]
    slices = json.loads(selfhosted.kubectl(
        "-n", "kube-system", "get", "endpointslices", "-l", "kubernetes.io/service-name=kube-dns",
        "-o", "json").stdout)["items"]  # fmt: skip
    published = {a for s in slices for e in s["endpoints"] for a in e["addresses"]}
    assert published == {p["status"]["podIP"] for p in dns_pods} and len(dns_pods) == 1
    # the CLI goes through the gateway to the pods, and services call each other through it
    assert selfhosted.openstack("token", "issue").returncode == 0
    flavors = selfhosted.openstack_json("flavor", "list")
    assert "m1.nano" in {f["Name"] for f in flavors}
    images = selfhosted.openstack_json("image", "list")  # offered by image-api at its start
    assert "busybox" in {i["Name"] for i in images}


def test_each_part_calls_the_api_server_as_its_own_service_account(selfhosted: Cluster) -> None:
    """No control-plane pod holds the administrator's token: each runs as its component's
    ServiceAccount, its ClusterRole grants what that part does, and none was refused."""
    wait_for(lambda: controlplane(selfhosted).get("status", {}).get("phase") == "Ready", "Ready")
    pods = json.loads(selfhosted.kubectl("-n", NS, "get", "pods", "-o", "json").stdout)["items"]
    accounts = {
        p["metadata"]["labels"]["app.kubernetes.io/name"]: p["spec"]["serviceAccountName"]
        for p in pods
    }
    assert {accounts[f"{api}-api"] for api in APIS} == {"unistack-api"}
    assert accounts["controllers"] == "unistack-controllers"
    assert accounts["gateway"] == "unistack-gateway" and accounts["dns"] == "unistack-dns"
    credentials = selfhosted.kubectl(
        "-n", NS, "get", "secret", "unistack-credentials", "-o", "jsonpath={.data.kubeconfig}"
    ).stdout
    user = yaml.safe_load(base64.b64decode(credentials))["users"][0]["user"]
    assert user == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}

    def can(account: str, *request: str) -> str:
        who = f"system:serviceaccount:{NS}:unistack-{account}"
        answer = selfhosted.kubectl("auth", "can-i", *request, "--as", who, check=False)
        return answer.stdout.strip()

    assert can("api", "create", "servers.compute.unistack.io", "-n", "default") == "yes"
    assert can("api", "get", "secrets", "-n", NS) == "no"
    assert can("gateway", "list", "endpoints", "-n", NS) == "yes"
    assert can("gateway", "delete", "pods", "-n", NS) == "no"
    assert can("dns", "watch", "endpointslices.discovery.k8s.io", "-A") == "yes"
    # a refusal is logged: one asked for here, and none of what the pods did since the start
    as_gateway = ("--as", f"system:serviceaccount:{NS}:unistack-gateway")
    answer = selfhosted.kubectl("-n", NS, "get", "secrets", *as_gateway, check=False)
    assert answer.returncode != 0 and "Forbidden" in answer.stderr, answer.stderr
    log = (selfhosted.state_dir / "logs" / "apiserver.log").read_text()
    refused = [
        line
        for line in log.splitlines()
        if "forbidden" in line and f"system:serviceaccount:{NS}:" in line
    ]
    assert len(refused) == 1 and 'cannot list resource "secrets"' in refused[0], refused[:5]


def lease_spec(cluster: Cluster, name: str) -> dict:
    lease = cluster.kubectl("-n", "kube-system", "get", "lease", name, "-o", "json").stdout
    return dict(json.loads(lease)["spec"])


def lease_holder(cluster: Cluster, name: str) -> str:
    return str(lease_spec(cluster, name).get("holderIdentity") or "")


def stamp(micro_time: str) -> float:
    return datetime.datetime.fromisoformat(micro_time.replace("Z", "+00:00")).timestamp()


def holder_pod(cluster: Cluster, lease: str) -> str:
    """The controllers pod leading `lease` (a pod's identity is its name), or ""."""
    names = {p["metadata"]["name"] for p in live_pods(cluster, NS, CONTROLLERS) if ready(p)}
    pod = lease_holder(cluster, lease)
    return pod if pod in names else ""


def test_the_controllers_are_pods_and_their_work_goes_on_when_the_leader_goes(
    selfhosted: Cluster,
) -> None:
    """The supervisor's controllers handed both Leases to the controllers pod; deleting it,
    a Deployment created at once still gets its ReplicaSet (the bootstrap stands in, then
    hands over to the replacement)."""
    for lease in LEASES:
        wait_for(lambda lease=lease: holder_pod(selfhosted, lease), f"a pod leads {lease}")
    leader = holder_pod(selfhosted, LEASES[0])
    selfhosted.kubectl("-n", NS, "delete", "pod", leader, "--wait=false")
    name = "resumed"
    selfhosted.kubectl("create", "deployment", name, "--image", "busybox", "--replicas", "0")
    try:

        def replicaset() -> bool:
            found = selfhosted.kubectl("get", "replicasets", "-l", f"app={name}", "-o", "json")
            return bool(json.loads(found.stdout)["items"])

        wait_for(replicaset, "the Deployment's ReplicaSet, made by whoever leads now")
        for lease in LEASES:
            wait_for(
                lambda lease=lease: holder_pod(selfhosted, lease) not in ("", leader),
                f"the replacement pod leads {lease}",
            )  # fmt: skip
        # deleted at once (it cannot release): the bootstrap does not wait for the lease to
        # expire, as the pod is known to be gone
        leader = holder_pod(selfhosted, LEASES[0])
        before = lease_spec(selfhosted, LEASES[0])
        selfhosted.kubectl(
            "-n", NS, "delete", "pod", leader, "--force", "--grace-period=0", "--wait=false"
        )
        wait_for(lambda: lease_holder(selfhosted, LEASES[0]) != leader, "a new holder")
        after = lease_spec(selfhosted, LEASES[0])
        expiry = stamp(before["renewTime"]) + before["leaseDurationSeconds"]
        assert stamp(after["acquireTime"]) < expiry, (before, after)
    finally:
        selfhosted.kubectl("delete", "deployment", name, check=False)


def gateway_pods(cluster: Cluster) -> list[dict]:
    return [p for p in live_pods(cluster, NS, GATEWAY) if ready(p)]


def set_replicas(cluster: Cluster, service: str, replicas: int | None) -> None:
    patch = json.dumps({"spec": {"services": {service: {"replicas": replicas}}}})
    cluster.kubectl("-n", NS, "patch", "controlplane", "unistack", "--type", "merge", "-p", patch)


@pytest.mark.deep
def test_the_gateway_is_pods_and_the_bootstrap_serves_only_without_them(
    selfhosted: Cluster,
) -> None:
    """The gateway's pods serve the OpenStack port on the host's network; the supervisor's
    HAProxy stood down once one was Ready. Deleting one of two under load fails nothing
    (they share the port); with none, the bootstrap's serves again."""
    bootstrap = selfhosted.state_dir / "gateway" / "master.sock"  # while its HAProxy runs
    wait_for(lambda: len(gateway_pods(selfhosted)) == 1, "a gateway pod Ready")
    wait_for(lambda: not bootstrap.exists(), "the bootstrap's gateway stood down")
    pod = gateway_pods(selfhosted)[0]
    assert pod["spec"]["hostNetwork"] is True
    assert pod["status"]["podIP"] == pod["status"]["hostIP"]
    assert selfhosted.openstack("token", "issue").returncode == 0  # through the pod alone
    set_replicas(selfhosted, "gateway", 2)
    try:
        wait_for(lambda: len(gateway_pods(selfhosted)) == 2, "two gateway pods")
        with rally_load(selfhosted, workers=3) as load:
            wait_for(lambda: len(load.snapshot()) > 30, "the load to run")
            victim = gateway_pods(selfhosted)[0]["metadata"]["name"]
            selfhosted.kubectl("-n", NS, "delete", "pod", victim)
            wait_for(
                lambda: victim not in {p["metadata"]["name"] for p in gateway_pods(selfhosted)}
                and len(gateway_pods(selfhosted)) == 2,
                "a replacement gateway pod",
            )  # fmt: skip
            sent = len(load.snapshot())
            wait_for(lambda: len(load.snapshot()) > sent + 30, "more load")
        samples = load.snapshot()
        assert [s.error for s in samples if not s.ok] == []
        assert not bootstrap.exists()  # the pods did it all
        set_replicas(selfhosted, "gateway", 0)
        wait_for(lambda: bootstrap.exists(), "the bootstrap's gateway to stand in")
        wait_for(
            lambda: selfhosted.openstack("token", "issue", check=False).returncode == 0,
            "the CLI through the bootstrap's gateway",
        )  # fmt: skip
    finally:
        set_replicas(selfhosted, "gateway", None)
    wait_for(lambda: len(gateway_pods(selfhosted)) == 1, "the gateway pod back")
    wait_for(lambda: not bootstrap.exists(), "the bootstrap's gateway stood down again")


def validate_token(cluster: Cluster, subject: str) -> int:
    """Keystone's GET /v3/auth/tokens for `subject`, as a fresh admin token: the status."""
    clouds = yaml.safe_load((cluster.state_dir / "clouds.yaml").read_text())
    auth_url = clouds["clouds"]["unistack"]["auth"]["auth_url"]
    admin = cluster.openstack_json("token", "issue")["id"]
    headers = {"X-Auth-Token": admin, "X-Subject-Token": subject}
    request = urllib.request.Request(f"{auth_url}/v3/auth/tokens", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.deep
def test_rotated_keys_roll_the_api_pods_and_keep_tokens_valid(selfhosted: Cluster) -> None:
    """`unistack keys rotate` (Keystone's fernet_rotate) publishes the keys' Secret again and
    the operator rolls the API pods onto it; a token issued before stays valid, and so does
    one the new primary sealed."""
    wait_for(lambda: controlplane(selfhosted)["status"]["phase"] == "Ready", "Ready", 120)
    old_token = selfhosted.openstack_json("token", "issue")["id"]
    before = {p["metadata"]["name"] for p in ready_pods(selfhosted, "identity")}
    rotated = selfhosted.unistack("keys", "rotate")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "key 2 is primary" in rotated.stdout and "published" in rotated.stdout

    def rolled() -> bool:
        now = {p["metadata"]["name"] for p in ready_pods(selfhosted, "identity")}
        return bool(now) and not now & before

    wait_for(rolled, "identity-api rolled onto the new keys", 180)
    wait_for(lambda: controlplane(selfhosted)["status"]["phase"] == "Ready", "Ready", 180)
    assert validate_token(selfhosted, old_token) == 200  # its key is still there
    new_token = selfhosted.openstack_json("token", "issue")["id"]
    assert validate_token(selfhosted, new_token) == 200
    assert selfhosted.openstack("server", "list").returncode == 0  # compute-api takes it too


def test_a_bad_controlplane_is_refused_with_a_status(selfhosted: Cluster) -> None:
    patch = json.dumps({"spec": {"size": "huge"}})
    result = selfhosted.kubectl(
        "-n", NS, "patch", "controlplane", "unistack", "--type", "merge", "-p", patch, check=False
    )
    assert result.returncode != 0
    assert "spec.size" in result.stderr and "Unsupported value" in result.stderr
    assert controlplane(selfhosted)["spec"]["size"] == "single"


@pytest.mark.deep
def test_an_upgrade_under_load_fails_no_request(selfhosted: Cluster) -> None:
    """A simulated release (a new tag of the same code) rolls through every service in order
    while clients call all five APIs; the ControlPlane records the estimate and the actual."""
    wait_for(lambda: controlplane(selfhosted)["status"]["phase"] == "Ready", "Ready", 120)
    plan = selfhosted.unistack("upgrade", "plan", "--to", "0.0.1-e2e")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "identity-api" in plan.stdout and "total" in plan.stdout
    with rally_load(selfhosted) as load:
        applied = selfhosted.unistack("upgrade", "apply", "--to", "0.0.1-e2e", timeout=600)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    samples = load.snapshot()
    assert len(samples) > 100, "the load did not run"
    assert [s.error for s in samples if not s.ok] == []
    assert {"neutron.create_network", "kube.create_configmap"} <= {s.action for s in samples}
    status = controlplane(selfhosted)["status"]
    assert status["release"] == "0.0.1-e2e" and status["phase"] == "Ready"
    upgrade = status["upgrade"]
    assert upgrade["from"] == __version__ and upgrade["phase"] == "Complete"
    assert upgrade["estimateSeconds"] > 0 and upgrade["seconds"] > 0
    rest = ("dns", "registry", "gateway", "controllers")
    assert set(upgrade["steps"]) == {*APIS, *rest}
    started = [upgrade["steps"][step]["startedAt"] for step in (*APIS, *rest)]
    assert started == sorted(started), "the services went one at a time, identity first"
    for api in APIS:
        images = {p["spec"]["containers"][0]["image"] for p in ready_pods(selfhosted, api)}
        # the release's tag, and the digest it names in the image store (`Environment.digests`)
        tagged = {i.partition("@")[0] for i in images}
        assert len(images) == 1 and images.pop().partition("@")[2].startswith("sha256:")
        assert len(tagged) == 1 and tagged.pop().endswith("/unistack/controlplane:0.0.1-e2e")


def test_chaos_under_load_fails_no_request_and_clients_keep_working(
    selfhosted: Cluster, tmp_path: Path
) -> None:
    """`unistack chaos` deletes a compute-api or network-api pod (two replicas each) every
    8 s under its Rally-style load (reads, network and ConfigMap create/delete), while the
    openstack CLI and kubectl are used as a person would; nothing fails."""
    patch = json.dumps({"spec": {"services": {"compute": {"replicas": 2},
                                              "network": {"replicas": 2}}}})  # fmt: skip
    selfhosted.kubectl(
        "-n", NS, "patch", "controlplane", "unistack", "--type", "merge", "-p", patch
    )
    for api in ("compute", "network"):
        wait_for(lambda api=api: len(ready_pods(selfhosted, api)) == 2, f"two {api}-api pods")
    report = tmp_path / "chaos.json"
    argv = [*UNISTACK, "chaos", "--state-dir", str(selfhosted.state_dir),
            "-l", "app.kubernetes.io/name in (compute-api,network-api)",
            "--interval", "8", "--duration", "20", "--workers", "2",
            "--report", str(report)]  # fmt: skip
    chaos = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    by_hand = 0
    try:
        while chaos.poll() is None:
            name = f"by-hand-{by_hand}"
            selfhosted.openstack("network", "create", name)
            selfhosted.openstack("flavor", "list")
            selfhosted.openstack("network", "delete", name)
            selfhosted.kubectl("-n", NS, "get", "pods")
            by_hand += 1
        output = chaos.communicate(timeout=60)[0]
    finally:
        if chaos.poll() is None:
            chaos.kill()
    assert chaos.returncode == 0, output
    assert by_hand >= 2, "the CLIs ran too few times to mean anything"
    result = json.loads(report.read_text())
    assert result["ok"] and result["requests"]["failed"] == 0, result["errors"]
    assert result["requests"]["sent"] > 100
    assert len(result["kills"]) >= 2
    assert all(kill["recovery"] is not None for kill in result["kills"])
    assert {kill["victim"].split("-api-")[0] for kill in result["kills"]} <= {"compute", "network"}
    wait_for(lambda: controlplane(selfhosted)["status"]["phase"] == "Ready", "Ready again", 120)
