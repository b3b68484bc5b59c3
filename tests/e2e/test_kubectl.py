"""The real kubectl against `unistack up --detach`: the everyday commands and bad input."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from tests.e2e.conftest import Cluster

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue]}
"""


def deployment(replicas: int = 2, image: str = "nginx:1.25") -> str:
    return DEPLOYMENT.replace("{replicas}", str(replicas)).replace("{image}", image)


def test_get_namespaces_and_version(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "namespaces").stdout
    assert "default" in out and "kube-system" in out and "Active" in out
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert cluster.kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"


def test_typed_create_commands(cluster: Cluster) -> None:
    """These send protobuf bodies; the server decodes them and answers JSON."""
    cluster.kubectl("create", "namespace", "typed")
    cluster.kubectl("create", "configmap", "c", "-n", "typed", "--from-literal=a=b")
    cluster.kubectl("create", "secret", "generic", "s", "-n", "typed", "--from-literal=k=v")
    cluster.kubectl("create", "deployment", "d", "-n", "typed", "--image=busybox", "--replicas=2")
    cluster.kubectl("create", "service", "clusterip", "svc", "-n", "typed", "--tcp=80:8080")
    cluster.kubectl("create", "job", "j", "-n", "typed", "--image=busybox", "--", "echo", "hi")
    job = json.loads(cluster.kubectl("get", "job", "j", "-n", "typed", "-o", "json").stdout)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    secret = json.loads(cluster.kubectl("get", "secret", "s", "-n", "typed", "-o", "json").stdout)
    assert secret["data"] == {"k": "dg=="}
    deployment = json.loads(
        cluster.kubectl("get", "deploy", "d", "-n", "typed", "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_apply_apply_again_patch_scale_delete(cluster: Cluster) -> None:
    ns = "kubectl-flow"
    cluster.kubectl("create", "namespace", ns)
    created = cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment()).stdout
    assert "deployment.apps/web created" in created
    again = cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment(3, "nginx:1.27")).stdout
    assert "deployment.apps/web configured" in again
    obj = json.loads(cluster.kubectl("get", "-n", ns, "deployment", "web", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3
    assert [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]] == [
        "nginx:1.27",
        "busybox",
    ]
    assert obj["metadata"]["generation"] == 2
    unchanged = cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=deployment(3, "nginx:1.27")
    ).stdout
    assert "unchanged" in unchanged

    patch = (
        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}'
    )
    cluster.kubectl("patch", "-n", ns, "deployment", "web", "-p", patch)
    obj = json.loads(cluster.kubectl("get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    images = {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
    assert images == {"nginx": "nginx:1.27", "sidecar": "busybox:1.36"}

    assert "scaled" in cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=5").stdout
    as_yaml = yaml.safe_load(cluster.kubectl("get", "-n", ns, "deploy", "web", "-o", "yaml").stdout)
    assert as_yaml["spec"]["replicas"] == 5

    table = cluster.kubectl("get", "-n", ns, "deployments").stdout
    assert table.split("\n")[0].split()[:2] == ["NAME", "READY"]
    assert "web" in table

    assert "deleted" in cluster.kubectl("delete", "-n", ns, "deployment", "web").stdout
    missing = cluster.kubectl("get", "-n", ns, "deployment", "web", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_server_side_apply(cluster: Cluster) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n"
    cluster.kubectl("apply", "--server-side", "-f", "-", input=cm)
    conflicting = cm.replace("'1'", "'2'")
    clash = cluster.kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=conflicting, check=False
    )
    assert clash.returncode != 0 and "conflict" in clash.stderr.lower()
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        input=conflicting,
    )
    data = json.loads(cluster.kubectl("get", "cm", "ssa", "-o", "json").stdout)["data"]
    assert data == {"a": "2"}


def test_watch_sees_changes(cluster: Cluster) -> None:
    ns = "kubectl-watch"
    cluster.kubectl("create", "namespace", ns)
    env_args = [
        "kubectl",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--cache-dir",
        str(cluster.state_dir / "kubectl-cache"),
    ]
    watcher = subprocess.Popen(
        [*env_args, "get", "configmaps", "-n", ns, "-w", "--request-timeout=30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        cluster.kubectl("create", "configmap", "watched", "-n", ns, "--from-literal=a=b")
        deadline = time.monotonic() + 20
        seen = ""
        assert watcher.stdout is not None
        while "watched" not in seen and time.monotonic() < deadline:
            seen += watcher.stdout.readline()
        assert "watched" in seen
    finally:
        watcher.kill()
        watcher.wait()


def test_crd_then_custom_objects(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s"
    )
    widget = (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n"
        "spec: {size: 3, color: red}\n"
    )
    assert (
        "widget.example.com/w1 created" in cluster.kubectl("apply", "-f", "-", input=widget).stdout
    )
    table = cluster.kubectl("get", "widgets").stdout
    assert "SIZE" in table and "w1" in table and "3" in table
    assert "w1" in cluster.kubectl("get", "wd").stdout
    bad = widget.replace("size: 3", "size: 0").replace("w1", "w2")
    rejected = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert rejected.returncode != 0 and "spec.size" in rejected.stderr
    wrong_enum = widget.replace("red", "green").replace("w1", "w3")
    rejected = cluster.kubectl("apply", "-f", "-", input=wrong_enum, check=False)
    assert rejected.returncode != 0 and "spec.color" in rejected.stderr
    cluster.kubectl("delete", "crd", "widgets.example.com")


def test_bad_input_is_rejected_cleanly(cluster: Cluster) -> None:
    bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n"
    result = cluster.kubectl("apply", "-f", "-", input=bad_name, check=False)
    assert result.returncode != 0 and "is invalid" in result.stderr
    assert "metadata.name" in result.stderr
    no_selector = deployment().replace("  selector:\n    matchLabels: {app: web}\n", "")
    result = cluster.kubectl("apply", "-f", "-", input=no_selector, check=False)
    assert result.returncode != 0 and "spec.selector" in result.stderr
    typo = deployment().replace("  replicas: 2", "  replicass: 2")
    result = cluster.kubectl("apply", "-f", "-", input=typo, check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.replicass"' in result.stderr
    result = cluster.kubectl("get", "configmap", "Not_Valid", check=False)
    assert result.returncode != 0
    result = cluster.kubectl("get", "nosuchkind", check=False)
    assert result.returncode != 0 and "doesn't have a resource type" in result.stderr


def _registered_watchers(cluster: Cluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    line = next(x for x in text.splitlines() if x.startswith("apiserver_registered_watchers "))
    return float(line.split()[1])


def _settled_watchers(cluster: Cluster) -> float:
    """The watcher count once the controllers' informers have all opened theirs."""
    seen = [_registered_watchers(cluster)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (len(seen) >= 4 and len(set(seen[-4:])) == 1):
        time.sleep(0.5)
        seen.append(_registered_watchers(cluster))
    return seen[-1]


def test_a_killed_watch_releases_its_watcher(cluster: Cluster) -> None:
    baseline = _settled_watchers(cluster)
    assert baseline > 0  # the garbage collector's informers watch every resource
    args = [
        "kubectl",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--cache-dir",
        str(cluster.state_dir / "kubectl-cache"),
        "get",
        "secrets",
        "-A",
        "-w",
    ]
    watchers = [
        subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 20
        while _registered_watchers(cluster) < baseline + 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _registered_watchers(cluster) >= baseline + 3
    finally:
        for process in watchers:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 20
    while _registered_watchers(cluster) > baseline and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _registered_watchers(cluster) <= baseline


def test_rbac_for_a_keystone_tenant(cluster: Cluster) -> None:
    """RBAC served and enforced: a member of a Keystone project may do nothing on the
    Kubernetes API until a RoleBinding grants its project `edit` in one namespace."""
    roles = cluster.kubectl("get", "clusterroles").stdout
    assert roles.splitlines()[0].split() == ["NAME", "CREATED", "AT"]
    assert {"cluster-admin", "admin", "edit", "view"} <= {
        line.split()[0] for line in roles.splitlines()[1:]
    }
    auth = {"OS_USERNAME": "rbac-member", "OS_PASSWORD": "pw-rbac", "OS_PROJECT_NAME": "rbac"}
    cluster.openstack("project", "create", "rbac")
    cluster.openstack("user", "create", "rbac-member", "--password", "pw-rbac", "--project", "rbac")
    cluster.openstack("role", "add", "--project", "rbac", "--user", "rbac-member", "member")
    try:
        issued = cluster.openstack_json("token", "issue", **auth)
        token = ("--token", issued["id"])
        refused = cluster.kubectl(*token, "get", "pods", "-n", "rbac-e2e", check=False)
        assert refused.returncode != 0 and "Forbidden" in refused.stderr
        cluster.kubectl("create", "namespace", "rbac-e2e")
        cluster.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods",
                        "-n", "rbac-e2e")  # fmt: skip
        group = f"--group=keystone:project:{issued['project_id']}"
        cluster.kubectl(
            "create", "rolebinding", "dev", "--clusterrole=edit", group, "-n", "rbac-e2e"
        )

        def can_i(*args: str) -> str:
            return cluster.kubectl(*token, "auth", "can-i", *args, check=False).stdout.strip()

        deadline = time.monotonic() + 30  # edit's rules come from the aggregation controller
        while can_i("create", "deployments.apps", "-n", "rbac-e2e") != "yes":
            assert time.monotonic() < deadline, "the binding did not take effect"
            time.sleep(0.5)
        assert can_i("list", "pods", "-n", "default") == "no"
        listed = cluster.kubectl(*token, "auth", "can-i", "--list", "-n", "rbac-e2e").stdout
        assert any(line.split()[0] == "deployments.apps" for line in listed.splitlines()[1:])
    finally:
        cluster.kubectl("delete", "namespace", "rbac-e2e", "--wait=false", check=False)
        cluster.openstack("user", "delete", "rbac-member", check=False)
        cluster.openstack("project", "delete", "rbac", check=False)
