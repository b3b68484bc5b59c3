"""The control plane hosts itself: `unistack up --control-plane pods` runs every OpenStack API
as a Deployment in `unistack-system`, rendered from one ControlPlane, behind HAProxy.

kubectl sees the pods and the ControlPlane's status; the openstack CLI works through the
gateway; an override scales a service; and deleting one of two replicas while clients send
requests fails none of them. Needs root, runc and haproxy.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.conftest import Cluster, free_port, live_pods, start_cluster, wait_for
from unistack import __version__

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("haproxy") is None,
        reason="control-plane pods need root and runc, the gateway haproxy",
    ),
]
NS = "unistack-system"
APIS = ("identity", "image", "network", "volume", "compute")


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


def gateway_url(cluster: Cluster) -> str:
    settings = json.loads((cluster.state_dir / "settings.json").read_text())
    return f"http://127.0.0.1:{settings['host']['openstack_port']}"


def admin_token(cluster: Cluster) -> str:
    password = (cluster.state_dir / "admin-password").read_text().strip()
    user = {"name": "admin", "domain": {"id": "default"}, "password": password}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }
    }
    request = urllib.request.Request(
        f"{gateway_url(cluster)}/identity/v3/auth/tokens",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.headers["x-subject-token"])


@dataclass
class Load:
    """Clients sending OpenStack GETs through the gateway until stopped."""

    base: str
    token: str
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def loop(self, path: str) -> None:
        while not self.stop.is_set():
            request = urllib.request.Request(self.base + path, headers={"x-auth-token": self.token})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
            except Exception as error:  # any failure is what the test counts
                self.failures.append(f"{path}: {error}")
            self.sent += 1


def test_the_apis_run_as_pods_rendered_from_the_controlplane(selfhosted: Cluster) -> None:
    for api in APIS:
        wait_for(lambda api=api: len(ready_pods(selfhosted, api)) == 1, f"{api}-api ready")
    wait_for(lambda: controlplane(selfhosted).get("status", {}).get("phase") == "Ready", "Ready")
    status = controlplane(selfhosted)["status"]
    assert status["ready"] == "5/5" and status["release"] == __version__
    table = selfhosted.kubectl("-n", NS, "get", "controlplanes").stdout
    assert "unistack" in table and "5/5" in table and "Ready" in table
    # the CLI goes through the gateway to the pods, and services call each other through it
    assert selfhosted.openstack("token", "issue").returncode == 0
    flavors = selfhosted.openstack_json("flavor", "list")
    assert "m1.nano" in {f["Name"] for f in flavors}
    images = selfhosted.openstack_json("image", "list")  # offered by image-api at its start
    assert "busybox" in {i["Name"] for i in images}


def test_a_bad_controlplane_is_refused_with_a_status(selfhosted: Cluster) -> None:
    patch = json.dumps({"spec": {"size": "huge"}})
    result = selfhosted.kubectl(
        "-n", NS, "patch", "controlplane", "unistack", "--type", "merge", "-p", patch, check=False
    )
    assert result.returncode != 0
    assert "spec.size" in result.stderr and "Unsupported value" in result.stderr
    assert controlplane(selfhosted)["spec"]["size"] == "single"


def test_deleting_one_of_two_replicas_fails_no_request(selfhosted: Cluster) -> None:
    patch = json.dumps({"spec": {"services": {"compute": {"replicas": 2}}}})
    selfhosted.kubectl(
        "-n", NS, "patch", "controlplane", "unistack", "--type", "merge", "-p", patch
    )
    wait_for(lambda: len(ready_pods(selfhosted, "compute")) == 2, "two compute-api pods ready")
    load = Load(gateway_url(selfhosted), admin_token(selfhosted))
    paths = ("/compute/v2.1/flavors", "/compute/v2.1/servers", "/compute/v2.1/os-keypairs")
    clients = [threading.Thread(target=load.loop, args=(path,)) for path in paths]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        victim = ready_pods(selfhosted, "compute")[0]["metadata"]["name"]
        selfhosted.kubectl("-n", NS, "delete", "pod", victim, "--wait=false")

        def replaced() -> bool:
            names = {p["metadata"]["name"] for p in ready_pods(selfhosted, "compute")}
            return len(names) == 2 and victim not in names

        wait_for(replaced, "a replacement compute-api pod ready")
        time.sleep(2)
    finally:
        load.stop.set()
        for client in clients:
            client.join()
    assert load.sent > 50, "the load did not run"
    assert load.failures == [], load.failures[:5]
    wait_for(lambda: controlplane(selfhosted)["status"]["services"]["compute"]["ready"] == 2,
             "the ControlPlane reporting 2/2 compute-api")  # fmt: skip


def test_an_upgrade_under_load_fails_no_request(selfhosted: Cluster) -> None:
    """A simulated release (a new tag of the same code) rolls through every service in order
    while clients call all five APIs; the ControlPlane records the estimate and the actual."""
    wait_for(lambda: controlplane(selfhosted)["status"]["phase"] == "Ready", "Ready", 120)
    plan = selfhosted.unistack("upgrade", "plan", "--to", "0.0.1-e2e")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "identity-api" in plan.stdout and "total" in plan.stdout
    load = Load(gateway_url(selfhosted), admin_token(selfhosted))
    paths = ("/identity/v3/projects", "/image/v2/images", "/network/v2.0/networks",
             "/compute/v2.1/flavors", "/volume/v3/types")  # fmt: skip
    clients = [threading.Thread(target=load.loop, args=(path,)) for path in paths]
    for client in clients:
        client.start()
    try:
        applied = selfhosted.unistack("upgrade", "apply", "--to", "0.0.1-e2e", timeout=600)
    finally:
        load.stop.set()
        for client in clients:
            client.join()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert load.sent > 100, "the load did not run"
    assert load.failures == [], load.failures[:5]
    status = controlplane(selfhosted)["status"]
    assert status["release"] == "0.0.1-e2e" and status["phase"] == "Ready"
    upgrade = status["upgrade"]
    assert upgrade["from"] == __version__ and upgrade["phase"] == "Complete"
    assert upgrade["estimateSeconds"] > 0 and upgrade["seconds"] > 0
    assert set(upgrade["steps"]) == set(APIS)
    started = [upgrade["steps"][api]["startedAt"] for api in APIS]
    assert started == sorted(started), "the services went one at a time, identity first"
    for api in APIS:
        images = {p["spec"]["containers"][0]["image"] for p in ready_pods(selfhosted, api)}
        assert images and all(i.endswith("/unistack/controlplane:0.0.1-e2e") for i in images)
