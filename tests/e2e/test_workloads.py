"""Real containers through real kubectl: Deployments, Services, DNS, probes, restarts, OOM,
logs, exec and rollouts on the node agent's runc runtime.

These need root, runc and nftables (the agent falls back to its fake runtime without them, and
then there is nothing real to check): they skip with the reason otherwise.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import unistack
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


def apply_pod(cluster: Cluster, ns: str, name: str, command: list[str], **spec: object) -> None:
    """`kubectl apply` one busybox container running `command`, with `spec`'s fields."""
    container = {"name": name, "image": "busybox", "command": command}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container], **spec},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))


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


def test_a_pod_on_the_hosts_network_serves_on_the_hosts_address(cluster: Cluster, web: str) -> None:
    """`hostNetwork: true`: no namespace of its own, so a port it listens on is the host's,
    its podIP is the node's address, and it resolves names as the node does."""
    port = free_port()
    serve = (
        f"mkdir -p /www && echo on-host > /www/index.html && httpd -f -p 127.0.0.1:{port} -h /www"
    )
    apply_pod(cluster, web, "on-host", ["sh", "-c", serve], hostNetwork=True)
    try:
        wait_for(lambda: ready(get(cluster, web, "pod", "on-host")), "the host-network pod")
        pod = get(cluster, web, "pod", "on-host")
        assert pod["status"]["podIP"] == pod["status"]["hostIP"]

        def answers() -> bool:
            probe = subprocess.run(
                [sys.executable, "-c", "import urllib.request as u; "
                 f"print(u.urlopen('http://127.0.0.1:{port}/index.html', timeout=2).read())"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return "on-host" in probe.stdout

        wait_for(answers, "the pod's server on the host's loopback")
        own = cluster.kubectl("exec", "-n", web, "on-host", "--", "readlink", "/proc/1/ns/net")
        assert own.stdout.strip() == os.readlink("/proc/self/ns/net")  # the host's namespace
        resolv = cluster.kubectl("exec", "-n", web, "on-host", "--", "cat", "/etc/resolv.conf")
        assert "10.96.0.10" not in resolv.stdout  # ClusterFirst on the host: the node's
    finally:
        cluster.kubectl("delete", "pod", "-n", web, "on-host", "--wait=false", check=False)


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


def test_the_python_image_runs_unistacks_own_modules(cluster: Cluster, web: str) -> None:
    """`unistack/python` (built at `up` from the host's Python and unistack's dependencies)
    imports unistack's API server and controllers from its source, mounted read-only."""
    source = Path(unistack.__file__).parent
    script = (
        "import sys, ssl, sqlite3, orjson, uvicorn, uvloop, aiohttp, cryptography, pyroute2; "
        "sys.path.insert(0, '/opt/unistack'); "
        "import unistack.apiserver.app, unistack.kube.main, unistack.agent.main; "
        "print('unistack modules on', sys.version.split()[0], ssl.OPENSSL_VERSION)"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "python", "namespace": web},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "python",
                    "image": f"unistack/python:{sys.version_info.major}.{sys.version_info.minor}",
                    "command": ["python3", "-c", script],
                    "volumeMounts": [
                        {"name": "src", "mountPath": "/opt/unistack/unistack", "readOnly": True}
                    ],
                }
            ],
            "volumes": [{"name": "src", "hostPath": {"path": str(source)}}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    # The first `up` on a machine builds the image in the background: allow a pull retry.
    wait_for(
        lambda: (
            get(cluster, web, "pod", "python")["status"].get("phase") in ("Succeeded", "Failed")
        ),
        "the python pod to finish",
        timeout=120,
    )
    logs = cluster.kubectl("logs", "-n", web, "python").stdout
    assert get(cluster, web, "pod", "python")["status"]["phase"] == "Succeeded", logs
    assert "unistack modules on " + sys.version.split()[0] in logs


IN_CLUSTER = """
import json, os, ssl, urllib.error, urllib.request
secrets = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{secrets}/token").read()
namespace = open(f"{secrets}/namespace").read()
context = ssl.create_default_context(cafile=f"{secrets}/ca.crt")
host = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
def get(path):
    request = urllib.request.Request(f"https://{host}{path}")
    request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
status, pods = get(f"/api/v1/namespaces/{namespace}/pods")
print("own namespace:", status, len(pods.get("items", [])))
status, refused = get("/api/v1/namespaces/default/pods")
print("default:", status, refused.get("message"))
print("token:", token)
"""


def test_a_pod_calls_the_api_server_as_its_service_account(cluster: Cluster, web: str) -> None:
    """What every in-cluster client does (client-go's InClusterConfig): the pod finds the API
    server through the `kubernetes` Service's variables, verifies it with the mounted CA and
    calls it with its mounted token, as its ServiceAccount, which RBAC scopes; the token dies
    with the pod."""
    cluster.kubectl("create", "serviceaccount", "reader", "-n", web)
    cluster.kubectl(
        "create", "rolebinding", "reader", "--clusterrole=view",
        f"--serviceaccount={web}:reader", "-n", web,
    )  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "in-cluster", "namespace": web},
        "spec": {
            "serviceAccountName": "reader",
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": f"unistack/python:{sys.version_info.major}.{sys.version_info.minor}",
                "command": ["python3", "-c", IN_CLUSTER],
            }],
        },
    }  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    mounted = get(cluster, web, "pod", "in-cluster")["spec"]["containers"][0]["volumeMounts"]
    assert mounted[0]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    wait_for(
        lambda: (
            get(cluster, web, "pod", "in-cluster")["status"].get("phase") in ("Succeeded", "Failed")
        ),
        "the in-cluster client to finish",
        timeout=120,
    )
    logs = cluster.kubectl("logs", "-n", web, "in-cluster").stdout
    assert "own namespace: 200" in logs, logs
    user = f"system:serviceaccount:{web}:reader"
    assert f'default: 403 pods is forbidden: User "{user}" cannot list' in logs, logs
    token = logs.split("token:", 1)[1].strip()
    whoami = cluster.kubectl("--token", token, "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == user
    cluster.kubectl("delete", "pod", "in-cluster", "-n", web)
    wait_for(
        lambda: cluster.kubectl("--token", token, "auth", "whoami", check=False).returncode != 0,
        "the pod's token to die with it",
        timeout=30,
    )


STATEFUL = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: NS}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: NS}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox
        command: [sh, -c, "echo $(hostname) >> /data/starts; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
"""


def test_stateful_set_pods_keep_their_names_and_volumes(cluster: Cluster, web: str) -> None:
    """Each replica gets a claim from the default local-path class; a deleted replica comes
    back under its name, on its own volume, which remembers the earlier run."""
    cluster.kubectl("apply", "-f", "-", input=STATEFUL.replace("NS", web))

    def both_ready() -> bool:
        pods = live_pods(cluster, web, "app=db")
        return sorted(p["metadata"]["name"] for p in pods) == ["db-0", "db-1"] and all(
            map(ready, pods)
        )

    try:
        wait_for(both_ready, "db-0 and db-1 ready", timeout=90)
    except AssertionError as failure:
        state = cluster.kubectl("get", "statefulset,pods,pvc,pv,events", "-n", web, check=False)
        raise AssertionError(f"{failure}\n{state.stdout}{state.stderr}") from None
    for index in (0, 1):
        claim = get(cluster, web, "pvc", f"data-db-{index}")
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["storageClassName"] == "local-path"
    first_uid = get(cluster, web, "pod", "db-0")["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "-n", web, "db-0", "--wait=false")

    def back() -> bool:
        pod = get_or_none(cluster, web, "pod", "db-0")
        return pod is not None and pod["metadata"]["uid"] != first_uid and ready(pod)

    wait_for(back, "db-0 to come back", timeout=90)
    starts = cluster.kubectl("exec", "-n", web, "db-0", "--", "cat", "/data/starts").stdout
    assert starts.split() == ["db-0", "db-0"]  # the same volume, written by both runs
    other = cluster.kubectl("exec", "-n", web, "db-1", "--", "cat", "/data/starts").stdout
    assert other.split() == ["db-1"]


def get_or_none(cluster: Cluster, ns: str, kind: str, name: str) -> dict | None:
    found = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


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


def kubectl_command(cluster: Cluster, *args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment `Cluster.kubectl` uses, for kubectl runs it cannot drive."""
    cache = str(cluster.state_dir / "kubectl-cache")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return ["kubectl", "--cache-dir", cache, *args], env


def read_until(fd: int, seen: bytearray, done: Callable[[bytes], bool], timeout: float) -> bool:
    """Append what `fd` gives to `seen` until `done(seen)`, end of file or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done(bytes(seen)):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            return False
        if not chunk:
            return False
        seen += chunk
    return True


def test_interactive_exec_with_a_tty(cluster: Cluster, web: str) -> None:
    argv, env = kubectl_command(cluster, "exec", "-it", "-n", web, "client", "--", "sh")
    master, slave = os.openpty()
    # kubectl sends its terminal's size on the resize channel: the shell must see it.
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 101, 0, 0))
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    seen = bytearray()
    try:
        # An interactive busybox sh (stdin a terminal) prompts with "/ # ".
        assert read_until(master, seen, lambda out: b"/ # " in out, 20), seen
        os.write(master, b"echo hello-$((6*7)); tty; stty size\n")
        # Only the command's output has these (the echoed input has `$((6*7))`).
        assert read_until(master, seen, lambda out: b"hello-42" in out, 10), seen
        assert read_until(master, seen, lambda out: b"/dev/pts/" in out, 10), seen
        assert read_until(master, seen, lambda out: b"37 101" in out, 10), seen
        # A resize during the session (kubectl watches SIGWINCH; this terminal is not its
        # controlling one, so it is signalled by hand) reaches the shell's terminal too.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 120, 0, 0))
        process.send_signal(signal.SIGWINCH)
        for _ in range(10):
            os.write(master, b"stty size\n")
            if read_until(master, seen, lambda out: b"41 120" in out, 0.5):
                break
        assert b"41 120" in seen, seen
        os.write(master, b"exit 3\n")
        read_until(master, seen, lambda out: False, 10)  # to the end: kubectl closes its side
        assert process.wait(timeout=10) == 3, seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def test_exec_with_piped_stdin(cluster: Cluster, web: str) -> None:
    text = "".join(f"piped line {i}\n" for i in range(200))
    out = cluster.kubectl("exec", "-i", "-n", web, "client", "--", "cat", input=text)
    assert out.stdout == text
    counted = cluster.kubectl("exec", "-i", "-n", web, "client", "--", "wc", "-l", input=text)
    assert counted.stdout.strip() == "200"


def test_logs_follow_streams_new_lines(cluster: Cluster, web: str) -> None:
    tick = "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.2; done"
    apply_pod(cluster, web, "ticker", ["sh", "-c", tick])
    wait_for(
        lambda: "line-1" in cluster.kubectl("logs", "-n", web, "ticker", check=False).stdout,
        "the ticker to log",
    )
    argv, env = kubectl_command(cluster, "logs", "-f", "-n", web, "ticker")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None
    seen = bytearray()
    try:
        fd = process.stdout.fileno()
        assert read_until(fd, seen, lambda out: out.endswith(b"\n"), 10), seen
        first = len(seen.splitlines())
        # Lines written well after kubectl printed what was already there must still arrive.
        later = f"line-{first + 5}\n".encode()
        assert read_until(fd, seen, lambda out: later in out, 10), seen
        assert process.poll() is None, "kubectl logs -f ended while the container runs"
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines = seen.decode().splitlines()
    assert lines == [f"line-{i}" for i in range(len(lines))]


def test_logs_previous_shows_the_run_before_the_restart(cluster: Cluster, web: str) -> None:
    crasher = f"""
apiVersion: v1
kind: Pod
metadata: {{name: crasher, namespace: {web}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: scratch, emptyDir: {{}}}}]
  containers:
  - name: crasher
    image: busybox
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
    command:
    - sh
    - -c
    - |
      if [ -e /scratch/ran ]; then echo second-run; exec sleep 3600; fi
      touch /scratch/ran; echo first-run-marker; exit 2
"""
    cluster.kubectl("apply", "-f", "-", input=crasher)

    def restarted_and_running() -> bool:
        statuses = get(cluster, web, "pod", "crasher")["status"].get("containerStatuses") or []
        return bool(statuses) and statuses[0]["restartCount"] >= 1 and statuses[0]["ready"]

    wait_for(restarted_and_running, "the crasher to restart and run", timeout=30)
    status = get(cluster, web, "pod", "crasher")["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 2
    previous = cluster.kubectl("logs", "--previous", "-n", web, "crasher").stdout
    assert previous == "first-run-marker\n"
    wait_for(
        lambda: cluster.kubectl("logs", "-n", web, "crasher").stdout == "second-run\n",
        "the current run's log",
        timeout=10,
    )
