"""The garbage collector and namespace controller, running under `unistack up`, via kubectl."""

from __future__ import annotations

import ipaddress
import json
import time

from tests.e2e.conftest import Cluster, live_pods, wait_for


def _wait_gone(cluster: Cluster, *args: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.kubectl("get", *args, check=False).returncode != 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"{' '.join(args)} still exists after {timeout}s")


def test_namespace_deletion_removes_everything_in_it(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "short-lived")
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside, namespace: short-lived}\n"
    cluster.kubectl("apply", "-f", "-", input=cm)
    cluster.kubectl("delete", "namespace", "short-lived", "--timeout=60s")
    _wait_gone(cluster, "namespace", "short-lived")
    leftover = cluster.kubectl("get", "configmaps", "-n", "short-lived", "-o", "json").stdout
    assert json.loads(leftover)["items"] == []


def _owned_secret(owner: dict, name: str) -> str:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "ownerReferences": [ref]},
            "stringData": {"k": "v"},
        }
    )


def _owner_with_dependent(cluster: Cluster, owner: str, dependent: str) -> None:
    """A ConfigMap `owner` and a Secret `dependent` whose ownerReference points at it."""
    cluster.kubectl("create", "configmap", owner)
    obj = json.loads(cluster.kubectl("get", "cm", owner, "-o", "json").stdout)
    cluster.kubectl("apply", "-f", "-", input=_owned_secret(obj, dependent))


def test_background_cascading_deletion(cluster: Cluster) -> None:
    _owner_with_dependent(cluster, "owner-bg", "dependent-bg")
    cluster.kubectl("delete", "cm", "owner-bg")
    _wait_gone(cluster, "secret", "dependent-bg")


def test_foreground_cascading_deletion(cluster: Cluster) -> None:
    _owner_with_dependent(cluster, "owner-fg", "dependent-fg")
    cluster.kubectl("delete", "cm", "owner-fg", "--cascade=foreground", "--timeout=60s")
    _wait_gone(cluster, "cm", "owner-fg")
    _wait_gone(cluster, "secret", "dependent-fg")


def test_orphan_deletion_keeps_dependents(cluster: Cluster) -> None:
    _owner_with_dependent(cluster, "owner-or", "dependent-or")
    cluster.kubectl("delete", "cm", "owner-or", "--cascade=orphan", "--timeout=60s")
    _wait_gone(cluster, "cm", "owner-or")
    kept = json.loads(cluster.kubectl("get", "secret", "dependent-or", "-o", "json").stdout)
    assert not kept["metadata"].get("ownerReferences")


def test_deployment_makes_a_replicaset_and_its_pods(cluster: Cluster) -> None:
    """Pods stay Pending (no scheduler or node agent yet); their number follows the spec."""
    ns = "workloads"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=busybox", "--replicas=3")
    wait_for(lambda: len(live_pods(cluster, ns, "app=web")) == 3, "3 pods")
    rs = json.loads(cluster.kubectl("get", "rs", "-n", ns, "-o", "json").stdout)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    owners = {
        p["metadata"]["ownerReferences"][0]["name"] for p in live_pods(cluster, ns, "app=web")
    }
    assert owners == {rs[0]["metadata"]["name"]}
    cluster.kubectl("scale", "deployment/web", "-n", ns, "--replicas=1")
    wait_for(lambda: len(live_pods(cluster, ns, "app=web")) == 1, "scale down to 1 pod")
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(lambda: not live_pods(cluster, ns, "app=web"), "the garbage collector to remove pods")


def test_services_get_addresses_and_endpoints(cluster: Cluster) -> None:
    default = json.loads(cluster.kubectl("get", "svc", "kubernetes", "-o", "json").stdout)
    assert default["spec"]["clusterIP"] == "10.96.0.1"
    ns = "services"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "service", "nodeport", "web", "-n", ns, "--tcp=80:8080")
    svc = json.loads(cluster.kubectl("get", "svc", "web", "-n", ns, "-o", "json").stdout)
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    wait_for(
        lambda: cluster.kubectl("get", "endpoints", "web", "-n", ns, check=False).returncode == 0,
        "the Endpoints of the service",
    )
    slices = cluster.kubectl(
        "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web", "-o", "json"
    ).stdout
    assert len(json.loads(slices)["items"]) == 1


NODE = """
apiVersion: v1
kind: Node
metadata: {name: e2e-node, labels: {kubernetes.io/hostname: e2e-node}}
spec:
  taints: [{key: e2e, value: only, effect: NoSchedule}]
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: daemons}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      tolerations: [{key: e2e, operator: Exists}]
      containers: [{name: a, image: busybox, resources: {requests: {cpu: 100m}}}]
"""


def test_daemonset_pod_is_scheduled_onto_its_node(cluster: Cluster) -> None:
    """A hand-made Node next to the agent's own: the DaemonSet gets a pod on each."""
    cluster.kubectl("apply", "-f", "-", input=NODE)
    capacity = '{"status":{"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"}}}'
    cluster.kubectl(
        "patch", "node", "e2e-node", "--subresource=status", "--type=merge", "-p", capacity
    )
    cluster.kubectl("create", "namespace", "daemons")
    cluster.kubectl("apply", "-f", "-", input=DAEMONSET)

    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]

    def on_e2e_node() -> list[dict]:
        pods = live_pods(cluster, "daemons", "app=agent")
        return [p for p in pods if p["spec"].get("nodeName") == "e2e-node"]

    def bound() -> bool:
        return (
            len(live_pods(cluster, "daemons", "app=agent")) == len(nodes)
            and len(on_e2e_node()) == 1
        )

    wait_for(bound, "a daemon pod bound to each node, one of them e2e-node")
    pod = on_e2e_node()[0]
    scheduled = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert scheduled["PodScheduled"] == "True"


VOLUMES = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-small}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/unistack-e2e-pv-small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-big}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/unistack-e2e-pv-big}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  storageClassName: ""  # no class: a static volume of no class, not the default class
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
"""


def test_claim_binds_to_the_smallest_volume_that_fits(cluster: Cluster) -> None:
    """Static provisioning: the binder picks a PV; nothing is created on the host. (Without
    `storageClassName: ""` the claim would get the default class, `local-path`.)"""
    cluster.kubectl("apply", "-f", "-", input=VOLUMES)

    def claim() -> dict:
        return json.loads(cluster.kubectl("get", "pvc", "data", "-o", "json").stdout)

    wait_for(lambda: claim().get("status", {}).get("phase") == "Bound", "the claim to bind")
    assert claim()["spec"]["volumeName"] == "e2e-pv-big"
    big = json.loads(cluster.kubectl("get", "pv", "e2e-pv-big", "-o", "json").stdout)
    assert big["spec"]["claimRef"]["name"] == "data" and big["status"]["phase"] == "Bound"
