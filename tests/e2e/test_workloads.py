"""Real containers through real kubectl: Deployments, Services, DNS, probes, restarts, OOM,
logs, exec and rollouts on the node agent's runc runtime.

These need root, runc and nftables (the agent falls back to its fake runtime without them, and
then there is nothing real to check): they skip with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, free_port, live_pods, start_cluster, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nft") is None,
    reason="real pods need root, runc and nftables",
)

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: web
        image: IMAGE
        command:
        - sh
        - -c
        - mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: NS}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: NS}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox
    command: [sleep, "3600"]
"""


def ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


def get(cluster: Cluster, ns: str, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def fetch(cluster: Cluster, ns: str, url: str, count: int) -> list[str]:
    # busybox wget -T crashes (Debian 1.35 static build), so `timeout` bounds each request.
    script = f"for i in $(seq 1 {count}); do timeout 3 wget -qO- {url} || echo FAILED; done"
    out = cluster.kubectl("exec", "-n", ns, "client", "--", "sh", "-c", script, timeout=120)
    return out.stdout.split()


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> str:
    ns = "real-pods"
    cluster.kubectl("create", "namespace", ns)
    manifest = WEB.replace("NS", ns).replace("IMAGE", "busybox")
    cluster.kubectl("apply", "-f", "-", input=manifest)

    def all_ready() -> bool:
        found = live_pods(cluster, ns, "app=web")
        client = get(cluster, ns, "pod", "client")
        return len(found) == 3 and all(map(ready, found)) and ready(client)

    wait_for(all_ready, "3 ready web pods and a ready client", timeout=90)
    return ns


def test_service_reaches_every_replica_by_dns_and_cluster_ip(cluster: Cluster, web: str) -> None:
    names = {p["metadata"]["name"] for p in live_pods(cluster, web, "app=web")}
    by_dns = fetch(cluster, web, f"http://web.{web}.svc.cluster.local/", 40)
    assert set(by_dns) == names, f"answers by DNS name: {sorted(set(by_dns))}"
    cluster_ip = get(cluster, web, "service", "web")["spec"]["clusterIP"]
    by_ip = fetch(cluster, web, f"http://{cluster_ip}/", 40)
    assert set(by_ip) == names, f"answers by ClusterIP: {sorted(set(by_ip))}"
    short = fetch(cluster, web, "http://web/", 3)
    assert set(short) <= names and "FAILED" not in short


def test_logs_and_exec(cluster: Cluster, web: str) -> None:
    exec_out = cluster.kubectl(
        "exec", "-n", web, "client", "--", "sh", "-c", "echo out; echo err >&2"
    )
    assert exec_out.stdout.strip() == "out" and exec_out.stderr.strip() == "err"
    failed = cluster.kubectl("exec", "-n", web, "client", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    cluster.kubectl(
        "run",
        "-n",
        web,
        "talker",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo line-one; echo line-two",
    )
    wait_for(
        lambda: get(cluster, web, "pod", "talker")["status"].get("phase") == "Succeeded",
        "the talker pod to succeed",
    )
    logs = cluster.kubectl("logs", "-n", web, "talker").stdout
    assert logs.splitlines() == ["line-one", "line-two"]


def test_killed_container_is_restarted(cluster: Cluster, web: str) -> None:
    pod = live_pods(cluster, web, "app=web")[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    before = pod["status"]["containerStatuses"][0]["restartCount"]
    runc_root = cluster.state_dir / "agent" / "runc"
    container_id = f"{uid}-web-{before}"
    state = subprocess.run(
        ["runc", "--root", str(runc_root), "state", container_id],
        capture_output=True,
        text=True,
        check=True,
    )
    os.kill(json.loads(state.stdout)["pid"], signal.SIGKILL)

    def restarted() -> bool:
        current = get(cluster, web, "pod", name)
        status = current["status"]["containerStatuses"][0]
        return status["restartCount"] > before and ready(current)

    wait_for(restarted, "the killed container to restart and be ready again")
    status = get(cluster, web, "pod", name)["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 137


def test_deleted_pod_is_replaced(cluster: Cluster, web: str) -> None:
    victim = live_pods(cluster, web, "app=web")[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", "-n", web, victim, "--wait=false")

    def replaced() -> bool:
        found = live_pods(cluster, web, "app=web")
        names = {p["metadata"]["name"] for p in found}
        return len(found) == 3 and victim not in names and all(map(ready, found))

    wait_for(replaced, "a ready replacement pod")


def test_failing_readiness_takes_the_pod_out_of_the_service(cluster: Cluster, web: str) -> None:
    pod = live_pods(cluster, web, "app=web")[0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    cluster.kubectl("exec", "-n", web, name, "--", "rm", "/www/index.html")

    def out_of_service() -> bool:
        slices = json.loads(
            cluster.kubectl(
                "get",
                "endpointslices",
                "-n",
                web,
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "json",
            ).stdout
        )["items"]
        ready_ips = {
            address
            for s in slices
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
            for address in e["addresses"]
        }
        return not ready(get(cluster, web, "pod", name)) and ip not in ready_ips

    wait_for(out_of_service, "the unready pod to leave the Service")
    answers = fetch(cluster, web, "http://web/", 20)
    assert name not in answers and "FAILED" not in answers
    cluster.kubectl("exec", "-n", web, name, "--", "sh", "-c", "hostname > /www/index.html")
    wait_for(lambda: ready(get(cluster, web, "pod", name)), "the pod to be ready again")


def test_rolling_update_loses_no_request(cluster: Cluster, web: str) -> None:
    settings = json.loads((cluster.state_dir / "settings.json").read_text())
    registry = f"127.0.0.1:{settings['host']['registry_port']}"
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is needed to push the new image")
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{registry}/library/busybox:latest",
            f"docker://{registry}/library/busybox:v2",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    results: list[str] = []
    looping = threading.Thread(
        target=lambda: results.extend(fetch(cluster, web, "http://web/", 150))
    )
    looping.start()
    time.sleep(1)
    cluster.kubectl("set", "image", "-n", web, "deployment/web", "web=busybox:v2")
    cluster.kubectl("rollout", "status", "-n", web, "deployment/web", "--timeout=120s", timeout=130)
    looping.join()
    images = {p["spec"]["containers"][0]["image"] for p in live_pods(cluster, web, "app=web")}
    assert images == {"busybox:v2"}
    assert len(results) == 150 and "FAILED" not in results, results.count("FAILED")


def test_memory_hog_is_oom_killed(cluster: Cluster, web: str) -> None:
    hog = f"""
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {web}}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox
    command: [dd, if=/dev/zero, of=/dev/null, bs=200M, count=1]
    resources: {{limits: {{memory: 32Mi}}}}
"""
    cluster.kubectl("apply", "-f", "-", input=hog)

    def terminated() -> dict | None:
        statuses = get(cluster, web, "pod", "hog")["status"].get("containerStatuses") or []
        return statuses[0]["state"].get("terminated") if statuses else None

    wait_for(lambda: terminated() is not None, "the memory hog to end")
    state = terminated()
    assert state is not None and state["reason"] == "OOMKilled" and state["exitCode"] == 137
    assert get(cluster, web, "pod", "hog")["status"]["phase"] == "Failed"


def test_missing_image_backs_off_with_the_reason(cluster: Cluster, web: str) -> None:
    cluster.kubectl("run", "-n", web, "ghost", "--image=no-such-image:v9", "--restart=Never")

    def waiting() -> dict:
        statuses = get(cluster, web, "pod", "ghost")["status"].get("containerStatuses") or []
        return statuses[0]["state"].get("waiting", {}) if statuses else {}

    wait_for(
        lambda: waiting().get("reason") in ("ErrImagePull", "ImagePullBackOff"),
        "the missing image to be reported",
    )
    assert "no-such-image" in waiting()["message"]
    wait_for(lambda: waiting().get("reason") == "ImagePullBackOff", "ImagePullBackOff")


def test_down_leaves_nothing_behind(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "state", free_port(), "down")
    try:
        cluster.kubectl("run", "sleeper", "--image=busybox", "--", "sleep", "3600")
        wait_for(lambda: ready(get(cluster, "default", "pod", "sleeper")), "a running pod")
        uid = get(cluster, "default", "pod", "sleeper")["metadata"]["uid"]
    finally:
        down = cluster.unistack("down")
    assert down.returncode == 0, down.stderr
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert uid not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "unistackdown" not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "unistackdown" not in tables
    mounts = Path("/proc/self/mounts").read_text()
    assert str(cluster.state_dir) not in mounts
    assert not Path("/sys/fs/cgroup/memory/unistack/down-agent").exists()
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(cluster.state_dir) not in processes and uid not in processes
