"""The self-hosted control plane as manifests for a real Kubernetes cluster (`unistack manifests`).

Pure: `manifests(options, credentials)` returns, in the order `kubectl apply` needs them, the
Namespace; the CustomResourceDefinitions of every IaaS kind (`unistack.iaas.<service>.kinds`)
and of the ControlPlane (`kind`); a ControlPlane of the chosen size and release; one
ServiceAccount, ClusterRole and ClusterRoleBinding per component (`accounts.COMPONENTS`, with
the verbs each one uses); what the pods mount (the settings ConfigMap, the credentials and token-key
Secrets, the image store's claim); the API and controllers' Deployments (the controllers
leader elected, two replicas from `small`) and the API Services, from `render.render` like
the operator's; the HAProxy gateway and its Service, and the host agent as a privileged
DaemonSet on the host's network and pids.

Every pod reads its state directory as the embedded ones do (`render.STATE_DIR`), with the
settings from the ConfigMap and a kubeconfig from the credentials Secret that names the API
server as `kubernetes.default.svc` with the pod's own ServiceAccount token and CA, the
kubeconfig form of the in-cluster configuration (`unistack.client.kubeconfig.in_cluster`).
`to_yaml` writes them as one multi-document stream; `unistack.cli.manifests` is the command.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from unistack.controlplane import accounts, kind, presets, render
from unistack.controlplane.accounts import IAAS_KINDS, PART_OF, meta

Obj = dict[str, Any]

DEFAULT_REGISTRY = "127.0.0.1:5000"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
GATEWAY = "unistack-gateway"
CONTROLLERS = "controllers"  # `render`s
AGENT = "unistack-agent"
IMAGES_CLAIM = "unistack-images"
IMAGES_STORAGE = "10Gi"
AGENT_HOST_DIR = "/var/lib/unistack/agent"
# the components these manifests run (a real cluster has its own DNS)
DEPLOYED = ("api", "controllers", "gateway", "agent")


@dataclass(frozen=True)
class Options:
    """What `unistack manifests` was asked for."""

    release: str
    size: str = "single"
    namespace: str = kind.NAMESPACE
    registry: str = DEFAULT_REGISTRY


@dataclass(frozen=True)
class Credentials:
    """The secrets the pods share: the admin password and the token keys (Keystone's
    layout: file `0` is staged, the highest number is primary)."""

    admin_password: str
    fernet_keys: tuple[bytes, ...]


def manifests(options: Options, credentials: Credentials | None = None) -> list[Obj]:
    """Every object, in apply order. Without `credentials` the Secrets are left out (an
    existing installation keeps its password and token keys)."""
    objects: list[Obj] = [namespace_object(options.namespace), *definitions()]
    objects.append(controlplane(options))
    objects += accounts.rbac(options.namespace, DEPLOYED)
    settings_json = json.dumps(settings(), indent=2, sort_keys=True) + "\n"
    objects.append(render.settings_config_map(options.namespace, settings_json))
    if credentials is not None:
        objects += secrets(options.namespace, credentials)
    objects.append(images_claim(options.namespace))
    objects += api_objects(options)
    objects += [gateway_deployment(options), gateway_service(options.namespace)]
    objects.append(agent_daemonset(options))
    return objects


def to_yaml(objects: Sequence[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def namespace_object(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": PART_OF}}


def definitions() -> list[Obj]:
    """The CRDs: every IaaS kind's, then the ControlPlane's."""
    return [k.definition() for k in IAAS_KINDS] + [kind.definition()]


def controlplane(options: Options) -> Obj:
    obj = kind.new(options.release, options.size)
    obj["metadata"]["namespace"] = options.namespace
    return obj


def settings() -> Obj:
    """The state directory's `settings.json` the pods read, host options as `up` records
    them: the gateway on the API pods' port, and no operator in the controllers (control
    plane `processes`: these manifests are the objects it would render)."""
    return {"host": {"control_plane": "processes", "openstack_port": render.PORT}}


def secrets(namespace: str, credentials: Credentials) -> list[Obj]:
    """The Secrets the pods mount (`render.credential_secrets`), with the in-cluster
    kubeconfig."""
    config = accounts.pod_kubeconfig(namespace, IN_CLUSTER_SERVER)
    kubeconfig = yaml.safe_dump(config, sort_keys=False).encode()
    keys = {str(index): key for index, key in enumerate(credentials.fernet_keys)}
    password = credentials.admin_password.encode()
    return render.credential_secrets(namespace, kubeconfig, password, keys)


def images_claim(namespace: str) -> Obj:
    """Glance's image store, shared by the image API's replicas on any node."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(IMAGES_CLAIM, namespace),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": IMAGES_STORAGE}},
        },
    }


def environment(options: Options) -> render.Environment:
    return render.Environment(
        registry=options.registry,
        internal_url=f"http://{GATEWAY}.{options.namespace}.svc:{render.PORT}",
        images_dir="",
        images_claim=IMAGES_CLAIM,
        accounts=accounts.service_accounts(DEPLOYED),
    )


def api_objects(options: Options) -> list[Obj]:
    """The API and controllers' Deployments and the Services exactly as the operator
    renders them, in the chosen namespace, but DNS and the image registry (a real cluster
    has its own) and the gateway (here a Deployment behind a Service, `gateway_objects`, not
    on the nodes' network). (The controllers run no operator here: the settings say
    `processes`, and these manifests are what it would render.)"""
    elsewhere = {presets.DNS, presets.REGISTRY, presets.GATEWAY}
    left_out = {s.deployment for s in presets.SERVICES if s.component in elsewhere}
    objects = render.render(controlplane(options), environment(options))
    objects = [obj for obj in objects if obj["metadata"]["name"] not in left_out]
    for obj in objects:
        obj["metadata"]["namespace"] = options.namespace
    return objects


def _labels(name: str, component_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component_name,
        **PART_OF,
    }


def _serve(service: str) -> list[str]:
    return ["python3", "-m", "unistack.cli.main", "serve", service, "--state-dir", render.STATE_DIR]


def _state_mounts() -> list[Obj]:
    """The state directory's settings and kubeconfig, from the ConfigMap and the Secret."""
    return [
        {
            "name": "state",
            "mountPath": f"{render.STATE_DIR}/settings.json",
            "subPath": "settings.json",
            "readOnly": True,
        },
        {
            "name": "credentials",
            "mountPath": f"{render.STATE_DIR}/kubeconfig",
            "subPath": "kubeconfig",
            "readOnly": True,
        },
    ]


def _state_volumes() -> list[Obj]:
    return [
        {"name": "state", "configMap": {"name": render.CONFIG_MAP}},
        {"name": "credentials", "secret": {"secretName": render.CREDENTIALS_SECRET}},
    ]


def _container(options: Options, service: str, size: Obj) -> Obj:
    return {
        "name": service,
        "image": environment(options).image(options.release),
        "imagePullPolicy": "IfNotPresent",
        "command": _serve(service),
        "env": [{"name": "UNISTACK_RELEASE", "value": options.release}],
        "resources": size,
        "volumeMounts": _state_mounts(),
    }


def _resources(options: Options) -> Obj:
    return copy.deepcopy(presets.RESOURCES.get(options.size, presets.RESOURCES["single"]))


def _deployment(options: Options, name: str, replicas: int, pod: Obj) -> Obj:
    labels = _labels(name, name.removeprefix("unistack-"))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, options.namespace, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def gateway_deployment(options: Options) -> Obj:
    """HAProxy on the OpenStack port, as many replicas as each API has."""
    container = _container(options, "gateway", _resources(options))
    container["ports"] = [{"name": "http", "containerPort": render.PORT, "protocol": "TCP"}]
    container["readinessProbe"] = {"tcpSocket": {"port": render.PORT}, "periodSeconds": 2}
    container["volumeMounts"].append({"name": "work", "mountPath": f"{render.STATE_DIR}/gateway"})
    pod = {
        "serviceAccountName": accounts.component("gateway").account,
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "volumes": [*_state_volumes(), {"name": "work", "emptyDir": {}}],
    }
    return _deployment(options, GATEWAY, presets.REPLICAS.get(options.size, 1), pod)


def gateway_service(namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(GATEWAY, namespace, _labels(GATEWAY, "gateway")),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": GATEWAY},
            "ports": [
                {"name": "http", "port": render.PORT, "targetPort": render.PORT, "protocol": "TCP"}
            ],
        },
    }


# What the agent needs of its host: its state (pods, runc, IPAM), named network namespaces
# (bind mounts that must propagate back to the host), cgroups and sysfs, devices (loop, tun,
# kvm) and kernel modules.
_AGENT_HOST_PATHS: tuple[tuple[str, str, str, bool], ...] = (
    ("agent-state", AGENT_HOST_DIR, f"{render.STATE_DIR}/agent", False),
    ("run", "/run", "/run", False),
    ("sys", "/sys", "/sys", False),
    ("dev", "/dev", "/dev", False),
    ("modules", "/lib/modules", "/lib/modules", True),
)


def _host_path_type(name: str) -> str:
    return "DirectoryOrCreate" if name == "agent-state" else "Directory"


def agent_daemonset(options: Options) -> Obj:
    """On every node; no limits, as the instances it starts share its cgroup's."""
    requests = _resources(options)["requests"]
    container = _container(options, "agent", {"requests": requests})
    container["securityContext"] = {"privileged": True}
    for name, _, mount_path, read_only in _AGENT_HOST_PATHS:
        mount: Obj = {"name": name, "mountPath": mount_path, "readOnly": read_only}
        if name == "run":
            mount["mountPropagation"] = "Bidirectional"
        container["volumeMounts"].append(mount)
    host_volumes = [
        {"name": name, "hostPath": {"path": path, "type": _host_path_type(name)}}
        for name, path, _, _ in _AGENT_HOST_PATHS
    ]
    labels = _labels(AGENT, "agent")
    pod = {
        "serviceAccountName": accounts.component("agent").account,
        "hostNetwork": True,
        "hostPID": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [{"operator": "Exists"}],
        "containers": [container],
        "volumes": [*_state_volumes(), *host_volumes],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(AGENT, options.namespace, labels),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": AGENT}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
