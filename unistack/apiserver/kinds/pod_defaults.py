"""Pod and pod-template defaulting, following upstream's SetDefaults_* and pod admission.

`default_pod_spec` is what every pod spec gets, in Pods and in workload templates alike
(SetDefaults_PodSpec, _Container, _Volume, _Probe, ...). `default_pod` adds what only Pods
get: requests copied from limits, service links, the admission plugins' defaults
(ServiceAccount, Priority, DefaultTolerationSeconds) and the initial status with its QoS
class. Used by `core_pod` and `apps`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from unistack.apiserver.kinds.objects import (
    Obj,
    dict_of,
    dicts_in,
    ensure_dict,
    set_default,
)
from unistack.quantity import QuantityError, parse_quantity

VOLUME_SOURCES = frozenset(
    {
        "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
        "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume",
        "cinder", "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap",
        "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
        "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image",
    }
)  # fmt: skip
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_FILE_MODE_SOURCES = ("secret", "configMap", "downwardAPI", "projected")
_DEFAULT_FILE_MODE = 0o644
_BUILTIN_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_NODE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def all_containers(spec: Any) -> list[Obj]:
    """Init containers then app containers (ephemeral containers are not run here)."""
    spec = dict_of(spec)
    return dicts_in(spec.get("initContainers")) + dicts_in(spec.get("containers"))


def default_pod_spec(spec: Obj) -> None:
    set_default(spec, "dnsPolicy", "ClusterFirst")
    set_default(spec, "restartPolicy", "Always")
    set_default(spec, "terminationGracePeriodSeconds", 30)
    set_default(spec, "schedulerName", "default-scheduler")
    ensure_dict(spec, "securityContext")
    for container in all_containers(spec):
        default_container(container, host_network=spec.get("hostNetwork") is True)
    for volume in dicts_in(spec.get("volumes")):
        default_volume(volume)


def default_container(container: Obj, *, host_network: bool = False) -> None:
    set_default(container, "imagePullPolicy", image_pull_policy(container.get("image")))
    set_default(container, "terminationMessagePath", "/dev/termination-log")
    set_default(container, "terminationMessagePolicy", "File")
    ensure_dict(container, "resources")
    for port in dicts_in(container.get("ports")):
        set_default(port, "protocol", "TCP")
        if host_network:
            set_default(port, "hostPort", port.get("containerPort"))
    for env in dicts_in(container.get("env")):
        default_field_ref(dict_of(dict_of(env.get("valueFrom")).get("fieldRef")))
    for probe in (dict_of(container.get(name)) for name in _PROBES):
        default_probe(probe)
    for handler in dict_of(container.get("lifecycle")).values():
        default_http_get(dict_of(dict_of(handler).get("httpGet")))


def image_pull_policy(image: Any) -> str:
    """Always for `:latest` or an untagged image, else IfNotPresent."""
    if not isinstance(image, str) or not image:
        return "IfNotPresent"
    name, digested = image.split("@", 1)[0], "@" in image
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ("" if digested else "latest")
    return "Always" if tag == "latest" else "IfNotPresent"


def default_probe(probe: Obj) -> None:
    if not probe:
        return
    set_default(probe, "timeoutSeconds", 1)
    set_default(probe, "periodSeconds", 10)
    set_default(probe, "successThreshold", 1)
    set_default(probe, "failureThreshold", 3)
    default_http_get(dict_of(probe.get("httpGet")))


def default_http_get(action: Obj) -> None:
    if action:
        set_default(action, "path", "/")
        set_default(action, "scheme", "HTTP")


def default_field_ref(ref: Obj) -> None:
    if ref:
        set_default(ref, "apiVersion", "v1")


def default_volume(volume: Obj) -> None:
    if not VOLUME_SOURCES.intersection(volume):
        volume["emptyDir"] = {}
    for source in (dict_of(volume.get(key)) for key in _FILE_MODE_SOURCES):
        if source:
            set_default(source, "defaultMode", _DEFAULT_FILE_MODE)
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    for item in dicts_in(dict_of(volume.get("downwardAPI")).get("items")):
        default_field_ref(dict_of(item.get("fieldRef")))


def default_pod(pod: Obj) -> None:
    """Everything a Pod gets on the way in: spec defaults, admission, initial status."""
    spec = ensure_dict(pod, "spec")
    if spec is None:
        return
    default_pod_spec(spec)
    for container in all_containers(spec):
        copy_limits_to_requests(container)
    set_default(spec, "enableServiceLinks", True)
    admit_pod_spec(spec)
    status = ensure_dict(pod, "status")
    if status is not None:
        set_default(status, "phase", "Pending")
        set_default(status, "qosClass", qos_class(spec))


def copy_limits_to_requests(container: Obj) -> None:
    resources = dict_of(container.get("resources"))
    limits = resources.get("limits")
    if not isinstance(limits, dict) or not limits:
        return
    requests = ensure_dict(resources, "requests")
    if requests is not None:
        for name, value in limits.items():
            requests.setdefault(name, value)


def admit_pod_spec(spec: Obj) -> None:
    """The defaults kube-apiserver's admission plugins add to new Pods."""
    if spec.get("serviceAccountName") in (None, ""):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    set_default(spec, "serviceAccount", spec["serviceAccountName"])
    priority = _BUILTIN_PRIORITIES.get(str(spec.get("priorityClassName")), 0)
    set_default(spec, "priority", priority)
    set_default(spec, "preemptionPolicy", "PreemptLowerPriority")
    add_default_tolerations(spec)


def add_default_tolerations(spec: Obj) -> None:
    """DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300s."""
    if spec.get("tolerations") is None:
        spec["tolerations"] = []
    tolerations = spec["tolerations"]
    if not isinstance(tolerations, list):
        return
    for taint in _NODE_TAINTS:
        if not any(_tolerates_no_execute(t, taint) for t in dicts_in(tolerations)):
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            )


def _tolerates_no_execute(toleration: Obj, taint: str) -> bool:
    return toleration.get("key") in (None, "", taint) and toleration.get("effect") in (
        None,
        "",
        "NoExecute",
    )


def qos_class(spec: Any) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for container in all_containers(spec):
        resources = dict_of(container.get("resources"))
        _add_compute(requests, resources.get("requests"))
        found = _add_compute(limits, resources.get("limits"))
        guaranteed = guaranteed and found >= {"cpu", "memory"}
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


def _add_compute(totals: dict[str, Fraction], resources: Any) -> set[str]:
    """Add positive cpu and memory amounts into `totals`; return the names seen."""
    seen: set[str] = set()
    for name, value in dict_of(resources).items():
        if name not in ("cpu", "memory"):
            continue
        try:
            amount = parse_quantity(value)
        except QuantityError:
            continue
        if amount > 0:
            seen.add(name)
            totals[name] = totals.get(name, Fraction(0)) + amount
    return seen
