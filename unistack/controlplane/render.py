"""Render a ControlPlane into the objects that run it: a Deployment and a Service per API,
and the controllers' Deployment.

Pure: `render(controlplane, environment)` returns plain objects, the same ones the operator
applies to the embedded cluster and `unistack manifests` prints for a real one. Each API pod
runs `unistack serve openstack --services NAME` from the `unistack/controlplane:<release>`
image on port 8080, ready once `/healthz` answers; its Service carries the gateway path
annotation the gateway routes by (`unistack.controlplane.gateway`). Rolling updates keep
every replica until its replacement has been ready for `MIN_READY_SECONDS` (maxUnavailable
0, maxSurge 1), time for the gateway to route to it before the old one stops.

What a pod reads comes from the objects `unistack up` publishes next to the ControlPlane
(`cli.selfhost`): the host settings (ConfigMap `unistack-config`, the settings file of the
pod's state directory), the kubeconfig and admin password (Secret `unistack-credentials`),
the token keys (Secret `unistack-fernet-keys`), and two host directories: the image store
(Glance's data, shared with the registry) and the built-in VM image.

The DNS pods run `unistack serve dns --in-pod`: port 53 of their own address, asking the
node's resolvers for names outside the cluster (`dnsPolicy: Default`). Pods find them at the
cluster DNS address through `kube-system/kube-dns` (`dns_service`), whose EndpointSlice
(`dns_endpoint_slice`) lists the Ready ones: the operator keeps it, as they live in another
namespace than the Service every pod's resolv.conf names. The controllers' pods run
`unistack serve controllers` (the Kubernetes controllers, the
scheduler and this operator, each under its Lease) with the same settings and kubeconfig,
and the host directory of `local-path` volumes mounted at its own path, so the volumes they
provision name host paths. They serve no port: they are Ready while their heartbeat file is
fresh (touched while the API server answers them), and the bootstrap's controllers
(`cli.selfhost`) hand their leases over to them then.

The gateway pods run `unistack serve gateway --in-pod` on the node's network (the port
clients know, on every address of the node): HAProxy in front of the API pods. The registry
pods run `unistack serve registry --in-pod` the same way, on the registry port the node's
agents pull from, over the host's image store. Replicas share their port (SO_REUSEPORT);
the bootstrap's gateway and registry on the host stand in only while none is Ready.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from unistack.controlplane import kind, presets
from unistack.controlplane.presets import ControlPlaneService
from unistack.kube.replicaset import is_ready

Obj = dict[str, Any]

PORT = 8080
HEALTH_PATH = "/healthz"
IMAGE_REPOSITORY = "unistack/controlplane"
STATE_DIR = "/var/lib/unistack"
IMAGES_AT = f"{STATE_DIR}/images"  # the image store, in the pods that mount it
CREDENTIALS_DIR = "/etc/unistack"
FERNET_DIR = "/etc/unistack-fernet-keys"
VM_IMAGE_DIR = "/root/.cache/unistack/vm"
CONFIG_MAP = "unistack-config"
ENVIRONMENT_KEY = "environment.json"
CREDENTIALS_SECRET = "unistack-credentials"
FERNET_SECRET = "unistack-fernet-keys"
MANAGED_BY = "unistack-controlplane"
GATEWAY_LABEL = "unistack.io/gateway"
GATEWAY_PATH = "unistack.io/gateway-path"
RELEASE_LABEL = "unistack.io/release"
RENDERED_HASH = "unistack.io/rendered-hash"
KEYS_HASH = "unistack.io/fernet-keys-hash"
MIN_READY_SECONDS = 2
# The components whose pods serve a port of the node (the one clients and agents know).
ON_NODE_NETWORK = frozenset({presets.GATEWAY, presets.REGISTRY})
# A gateway pod's heartbeat, touched every second while its HAProxy runs
# (`controlplane.gateway`), and how long one told to stop serves on: the bootstrap's gateway
# (polling every second) binds the port meanwhile when no other replica is Ready.
GATEWAY_HEARTBEAT = f"{STATE_DIR}/gateway/heartbeat"
# Touched by a controllers pod every 2 s while the API server answers it.
CONTROLLERS_HEARTBEAT = f"{STATE_DIR}/controllers/heartbeat"
GATEWAY_DRAIN_SECONDS = 3
# Touched by a registry pod every second while it accepts connections; it serves on
# `GATEWAY_DRAIN_SECONDS` after being told to stop, as a gateway pod does, and for the same
# reason.
REGISTRY_HEARTBEAT = f"{STATE_DIR}/registry/heartbeat"
# A deleted pod serves on this long with /healthz failing, while the gateway's health checks
# (every 500 ms) and its reload from the Endpoints take it out of rotation.
DRAIN_SECONDS = 3


@dataclass(frozen=True)
class Environment:
    """Where the control plane runs: what differs between one machine and another."""

    registry: str  # where nodes pull the image from, e.g. 127.0.0.1:5000
    internal_url: str  # the gateway as pods reach it, for calls between services
    images_dir: str  # host directory of the image store
    vm_image_dir: str = ""  # host directory of the built-in VM image, if built
    node_name: str = ""  # pin the pods to this node (the one the gateway reaches)
    # On a real cluster (`manifests`): the image store is this PersistentVolumeClaim instead
    # of `images_dir` on the node.
    images_claim: str = ""
    # The ServiceAccount each component's pods run as (`controlplane.accounts`), by component
    accounts: dict[str, str] = dataclasses.field(default_factory=dict)
    volumes_dir: str = ""  # host directory of `local-path` volumes (the controllers')
    cluster_dns: str = ""  # the kube-dns Service's address, when the DNS pods serve it
    gateway_port: int = PORT  # where the gateway pods listen, on the node's addresses
    # On one machine the operator reads the image store (`pin_images`) and names each
    # release's image by digest as well (`digests`, release -> manifest digest): a release's
    # tag moves when the source changes under it (`up` again after an update), and a node
    # that has the tag already would run the old image (IfNotPresent) from an unchanged
    # template. With the digest the template changes and the Deployments roll.
    pin_images: bool = False
    digests: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Environment:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in orjson.loads(text).items() if k in known})

    def image(self, release: str) -> str:
        digest = self.digests.get(release)
        tagged = f"{self.registry}/{IMAGE_REPOSITORY}:{release}"
        return f"{tagged}@{digest}" if digest else tagged


def labels(service: ControlPlaneService) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": service.deployment,
        "app.kubernetes.io/component": service.component,
        "app.kubernetes.io/part-of": "unistack",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(service: ControlPlaneService) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.deployment}


def label_selector(service: ControlPlaneService) -> str:
    """`selector` as a `labelSelector` query string."""
    return ",".join(f"{k}={v}" for k, v in selector(service).items())


def render(
    controlplane: Obj,
    environment: Environment,
    releases: dict[str, str] | None = None,
    keys_hash: str = "",
) -> list[Obj]:
    """Every object the ControlPlane needs, each with a hash of its content annotated.

    `releases` says which release each service runs (by name) while an upgrade goes through
    them one at a time (`operator.rollout`); a service not named runs `spec.release`.
    `keys_hash` (of the token keys' Secret) is annotated on the API pods' template, so a
    rotation rolls them onto the new keys (a Secret volume is written at a pod's start)."""
    target = (controlplane.get("spec") or {}).get("release", "")
    objects: list[Obj] = []
    for service in presets.SERVICES:
        release = (releases or {}).get(service.name, target)
        rendered = deployment(controlplane, service, environment, release)
        if keys_hash and service.component == presets.API:
            template = rendered["spec"]["template"]["metadata"]
            template.setdefault("annotations", {})[KEYS_HASH] = keys_hash
        objects.append(rendered)
        if service.gateway_paths:
            objects.append(gateway_service(controlplane, service, release))
    for obj in objects:
        _owned_by(obj, controlplane)
        obj["metadata"].setdefault("annotations", {})[RENDERED_HASH] = content_hash(obj)
    return objects


def content_hash(obj: Obj) -> str:
    """What the operator compares to tell whether a stored object needs rewriting."""
    meta = obj["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != RENDERED_HASH}
    material = {"labels": meta.get("labels"), "annotations": annotations, "spec": obj["spec"]}
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _metadata(name: str, service: ControlPlaneService, release: str) -> Obj:
    return {
        "name": name,
        "namespace": kind.NAMESPACE,
        "labels": {**labels(service), RELEASE_LABEL: release},
    }


def _owned_by(obj: Obj, controlplane: Obj) -> None:
    meta = controlplane.get("metadata") or {}
    if meta.get("uid"):
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": f"{kind.GROUP}/{kind.VERSION}",
                "kind": kind.KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def deployment(
    controlplane: Obj, service: ControlPlaneService, env: Environment, release: str
) -> Obj:
    spec = controlplane.get("spec") or {}
    template_labels = {**labels(service), RELEASE_LABEL: release}
    resources = presets.resources(spec, service)
    if service.component == presets.CONTROLLERS:
        container = controllers_container(env, release, resources)
        volumes = _controller_volumes(env)
    elif service.component == presets.DNS:
        container, volumes = dns_container(env, release, resources), _dns_volumes()
    elif service.component == presets.GATEWAY:
        container, volumes = gateway_container(env, release, resources), _dns_volumes()
    elif service.component == presets.REGISTRY:
        container = registry_container(env, release, resources)
        volumes = [_settings_volume(), _images_volume(env)]
    else:
        container, volumes = api_container(service, env, release, resources), _volumes(env)
    pod_spec: Obj = {
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "volumes": volumes,
    }
    account = env.accounts.get(service.component)
    if account:
        pod_spec["serviceAccountName"] = account
    if env.node_name:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": env.node_name}
    if service.component == presets.DNS:  # it asks the node's resolvers, not itself
        pod_spec["dnsPolicy"] = "Default"
    if service.component in ON_NODE_NETWORK:  # on the node's port, beside its other replicas
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "Default"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(service.deployment, service, release),
        "spec": {
            "replicas": presets.replicas(spec, service),
            "selector": {"matchLabels": selector(service)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 5,
            # a new replica serves this long before an old one goes, so the gateway has
            # added it by then (HAProxy reloads from Endpoints in well under a second)
            "minReadySeconds": MIN_READY_SECONDS,
            "template": {"metadata": {"labels": template_labels}, "spec": pod_spec},
        },
    }


def api_container(
    service: ControlPlaneService, env: Environment, release: str, resources: Obj
) -> Obj:
    argv = [
        "python3", "-m", "unistack.cli.main", "serve", "openstack",
        "--state-dir", STATE_DIR,
        "--services", service.name,
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--internal-url", env.internal_url,
        "--kubeconfig", f"{CREDENTIALS_DIR}/kubeconfig",
        "--admin-password-file", f"{CREDENTIALS_DIR}/admin-password",
        "--key-repository", FERNET_DIR,
        "--drain-seconds", str(DRAIN_SECONDS),
    ]  # fmt: skip
    probe = {"httpGet": {"path": HEALTH_PATH, "port": PORT}, "timeoutSeconds": 2}
    mounts = [
        _settings_mount(),
        {"name": "images", "mountPath": IMAGES_AT},
        {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
        {"name": "fernet-keys", "mountPath": FERNET_DIR, "readOnly": True},
    ]
    if env.vm_image_dir:
        mounts.append({"name": "vm-image", "mountPath": VM_IMAGE_DIR, "readOnly": True})
    container = _container("api", env, release, argv, resources, mounts)
    container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    container["readinessProbe"] = {**probe, "periodSeconds": 1, "failureThreshold": 2}
    container["livenessProbe"] = {
        **probe, "initialDelaySeconds": 60, "periodSeconds": 10, "failureThreshold": 3,
    }  # fmt: skip
    return container


def controllers_container(env: Environment, release: str, resources: Obj) -> Obj:
    argv = ["python3", "-m", "unistack.cli.main", "serve", "controllers", "--state-dir", STATE_DIR]
    volumes_at = f"{STATE_DIR}/volumes"
    if env.volumes_dir:  # on the host, at its own path
        argv += ["--volumes-dir", env.volumes_dir]
        volumes_at = env.volumes_dir
    mounts = [_settings_mount(), _kubeconfig_mount(), {"name": "volumes", "mountPath": volumes_at}]
    if env.pin_images:  # the operator reads the release tags' digests (`Environment.digests`)
        mounts.append({"name": "images", "mountPath": IMAGES_AT, "readOnly": True})
    container = _container("controllers", env, release, argv, resources, mounts)
    # its name is its identity in the Leases (not the hostname, the node's on its network)
    name = {"fieldRef": {"fieldPath": "metadata.name"}}
    container["env"].append({"name": "POD_NAME", "valueFrom": name})
    # Ready while it reaches the API server (the heartbeat is fresh). No liveness probe: while
    # the API server is down every pod would fail it, and restarts only delay the recovery.
    container["readinessProbe"] = {
        **heartbeat_probe(CONTROLLERS_HEARTBEAT, 10), "periodSeconds": 2, "failureThreshold": 1,
    }  # fmt: skip
    return container


def heartbeat_probe(path: str, seconds: int) -> Obj:
    """An exec probe that passes while `path` was touched less than `seconds` ago
    (`runtime.process.heartbeat`), with the image's busybox."""
    fresh = f"[ -f {path} ] && [ $(( $(date +%s) - $(stat -c %Y {path}) )) -lt {seconds} ]"
    return {"exec": {"command": ["sh", "-c", fresh]}}


def dns_container(env: Environment, release: str, resources: Obj) -> Obj:
    argv = ["python3", "-m", "unistack.cli.main", "serve", "dns", "--state-dir", STATE_DIR,
            "--in-pod"]  # fmt: skip
    container = _container(
        "dns", env, release, argv, resources, [_settings_mount(), _kubeconfig_mount()]
    )
    container["ports"] = [
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
    ]
    container["readinessProbe"] = {
        "tcpSocket": {"port": 53}, "periodSeconds": 1, "failureThreshold": 2,
    }  # fmt: skip
    return container


def gateway_container(env: Environment, release: str, resources: Obj) -> Obj:
    """HAProxy on the gateway port of the node's network, kept equal to the API Services'
    Endpoints. Every replica (and the bootstrap's on the host) binds the port with
    SO_REUSEPORT, so none declares it; one is Ready while its HAProxy runs (its heartbeat is
    fresh; gone from the moment it drains)."""
    argv = ["python3", "-m", "unistack.cli.main", "serve", "gateway", "--state-dir", STATE_DIR,
            "--in-pod", "--port", str(env.gateway_port)]  # fmt: skip
    container = _container(
        "gateway", env, release, argv, resources, [_settings_mount(), _kubeconfig_mount()]
    )
    container["readinessProbe"] = {
        **heartbeat_probe(GATEWAY_HEARTBEAT, 5), "periodSeconds": 1, "failureThreshold": 1,
    }  # fmt: skip
    return container


def registry_container(env: Environment, release: str, resources: Obj) -> Obj:
    """The image registry on the registry port of the node's network, over the host's image
    store; like the gateway's, every replica and the bootstrap's share the port. Ready while
    it accepts connections (its heartbeat is fresh)."""
    argv = ["python3", "-m", "unistack.cli.main", "serve", "registry", "--state-dir", STATE_DIR,
            "--in-pod"]  # fmt: skip
    mounts = [_settings_mount(), {"name": "images", "mountPath": IMAGES_AT}]
    container = _container("registry", env, release, argv, resources, mounts)
    container["readinessProbe"] = {
        **heartbeat_probe(REGISTRY_HEARTBEAT, 5), "periodSeconds": 1, "failureThreshold": 1,
    }  # fmt: skip
    return container


def _settings_volume() -> Obj:
    return {"name": "state", "configMap": {"name": CONFIG_MAP}}


def _dns_volumes() -> list[Obj]:
    return [
        _settings_volume(),
        {"name": "credentials", "secret": {"secretName": CREDENTIALS_SECRET}},
    ]


def _controller_volumes(env: Environment) -> list[Obj]:
    volumes: Obj = {"name": "volumes", "emptyDir": {}}  # no host directory named: the pod's
    if env.volumes_dir:
        host = {"path": env.volumes_dir, "type": "DirectoryOrCreate"}
        volumes = {"name": "volumes", "hostPath": host}
    return [*_dns_volumes(), volumes, *([_images_volume(env)] if env.pin_images else [])]


def _state_file(volume: str, key: str) -> Obj:
    """One key of a ConfigMap or Secret volume, as that file of the state directory."""
    return {"name": volume, "mountPath": f"{STATE_DIR}/{key}", "subPath": key, "readOnly": True}


def _settings_mount() -> Obj:
    return _state_file("state", "settings.json")


def _kubeconfig_mount() -> Obj:
    return _state_file("credentials", "kubeconfig")


def _container(
    name: str, env: Environment, release: str, argv: list[str], resources: Obj, mounts: list[Obj]
) -> Obj:
    """What every control-plane container has: the release's image and its command."""
    return {
        "name": name,
        "image": env.image(release),
        "imagePullPolicy": "IfNotPresent",
        "command": argv,
        "env": [{"name": "UNISTACK_RELEASE", "value": release}],
        "resources": resources,
        "volumeMounts": mounts,
    }


def _volumes(env: Environment) -> list[Obj]:
    volumes: list[Obj] = [
        _settings_volume(),
        _images_volume(env),
        {"name": "credentials", "secret": {"secretName": CREDENTIALS_SECRET}},
        {"name": "fernet-keys", "secret": {"secretName": FERNET_SECRET}},
    ]
    if env.vm_image_dir:
        volumes.append(
            {"name": "vm-image", "hostPath": {"path": env.vm_image_dir, "type": "Directory"}}
        )
    return volumes


def _images_volume(env: Environment) -> Obj:
    if env.images_claim:
        return {"name": "images", "persistentVolumeClaim": {"claimName": env.images_claim}}
    return {"name": "images", "hostPath": {"path": env.images_dir, "type": "DirectoryOrCreate"}}


def gateway_service(controlplane: Obj, service: ControlPlaneService, release: str) -> Obj:
    metadata = _metadata(service.deployment, service, release)
    metadata["labels"][GATEWAY_LABEL] = "true"
    metadata["annotations"] = {GATEWAY_PATH: ",".join(service.gateway_paths)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector(service),
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


DNS_SERVICE = "kube-dns"
DNS_NAMESPACE = "kube-system"
DNS_SLICE = "kube-dns-unistack"  # the name the host's DNS server used, so this one replaces it


def dns_service(cluster_ip: str) -> Obj:
    """`kube-system/kube-dns`, as every pod's resolv.conf names it: no selector (the DNS pods
    are in the control plane's namespace), fed by `dns_endpoint_slice`."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
    ]
    metadata = {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": {"k8s-app": "kube-dns"}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"clusterIP": cluster_ip, "ports": ports}}  # fmt: skip


def dns_endpoint_slice(pods: Iterable[Obj]) -> Obj:
    """kube-dns's EndpointSlice: the DNS pods that are Ready and not going away."""
    endpoints = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if not is_ready(pod) or meta.get("deletionTimestamp") or not status.get("podIP"):
            continue
        ref = {"kind": "Pod", "namespace": meta.get("namespace", kind.NAMESPACE),
               "name": meta["name"], "uid": meta.get("uid", "")}  # fmt: skip
        endpoints.append(
            {"addresses": [status["podIP"]], "conditions": {"ready": True}, "targetRef": ref}
        )
    labels = {
        "kubernetes.io/service-name": DNS_SERVICE,
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": DNS_SLICE, "namespace": DNS_NAMESPACE, "labels": labels},
        "addressType": "IPv4",
        "endpoints": sorted(endpoints, key=lambda e: e["addresses"][0]),
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    }


_PART_OF = {"app.kubernetes.io/part-of": "unistack"}
# The published ConfigMap and Secrets, as a `labelSelector` (the operator watches them).
PUBLISHED_SELECTOR = ",".join(f"{k}={v}" for k, v in _PART_OF.items())


def settings_config_map(
    namespace: str, settings_json: str, environment: Environment | None = None
) -> Obj:
    """The host settings every pod mounts as its state directory's `settings.json`, and
    the Environment the operator renders with (`ENVIRONMENT_KEY`), wherever it runs."""
    metadata = {"name": CONFIG_MAP, "namespace": namespace, "labels": dict(_PART_OF)}
    data = {"settings.json": settings_json}
    if environment is not None:
        data[ENVIRONMENT_KEY] = environment.to_json()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def secret_hash(secret: Obj) -> str:
    """A digest of a Secret's data, to annotate the pods that mount it."""
    data = secret.get("data") or {}
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def credential_secrets(
    namespace: str, kubeconfig: bytes, admin_password: bytes, fernet_keys: dict[str, bytes]
) -> list[Obj]:
    """The Secrets every API pod mounts: its kubeconfig and the admin password, and the
    token keys (file name → key). `cli.selfhost` fills them from the state directory,
    `manifests` for a real cluster."""

    def secret(name: str, files: dict[str, bytes]) -> Obj:
        data = {key: base64.b64encode(value).decode() for key, value in files.items()}
        metadata = {"name": name, "namespace": namespace, "labels": dict(_PART_OF)}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
                "data": data}  # fmt: skip

    credentials = {"kubeconfig": kubeconfig, "admin-password": admin_password}
    return [secret(CREDENTIALS_SECRET, credentials), secret(FERNET_SECRET, fernet_keys)]
