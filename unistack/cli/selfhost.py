"""The self-hosted control plane's bootstrap, as kubeadm uploads its configuration and
certificates: what the control-plane pods need from the state directory, published as
objects in `unistack-system`, and the operator that turns the ControlPlane into pods.

`up` records the mode (`HostOptions.control_plane`): `pods` when the agent can run real
containers, else `processes` (the OpenStack APIs as one supervised process, as before).
In `pods` mode `serve controllers` runs `run` next to the Kubernetes controllers: it
publishes (idempotently, at every start) the ConfigMap `unistack-config` (the host settings,
read by the pods as their state directory), the Secrets `unistack-credentials` (a kubeconfig
naming the API server at the pod network's gateway address, and the admin password) and
`unistack-fernet-keys`, creates the ControlPlane `unistack` if there is none, and then runs
the operator under a Lease.

The operator renders the controllers as pods too (`render`); from then on the supervisor's
controllers process is the bootstrap, as bootkube's was: it leads the controllers' and the
operator's Leases only while none of those pods is ready (`leader.stand_by`), so it brings
the control plane up, hands over, and stands in again if every controllers pod is gone.
In a controllers pod (`run_operator`), the operator reads the environment it renders with
from the ConfigMap, as the host published it.

The gateway and the registry go the same way without a lease (`stand_in_for`): the
supervisor's HAProxy serves the OpenStack port, and its registry the registry port, until a
pod of theirs is Ready, then stop; the pods bind the same port (SO_REUSEPORT), so connections
go on being taken while it goes. The supervisor's registry is what serves the control plane's
image to the first pods, the registry's among them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import yaml

from unistack import __version__
from unistack.cli import kubeconfig
from unistack.cli.hostoptions import HostOptions
from unistack.cli.statedir import StateDir
from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CONFIGMAPS,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    ResourceRef,
)
from unistack.client.transport import TransportError
from unistack.controlplane import accounts, gateway, kind, presets, render
from unistack.controlplane.operator import Operator, install_definition
from unistack.kube.replicaset import is_ready
from unistack.runtime.leader import LeaderElector, stand_by, stand_in

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "unistack-controlplane-operator"
CONTROLLERS = next(s for s in presets.SERVICES if s.component == presets.CONTROLLERS)
GATEWAY = next(s for s in presets.SERVICES if s.component == presets.GATEWAY)
REGISTRY = next(s for s in presets.SERVICES if s.component == presets.REGISTRY)
TCP_MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")

log = logging.getLogger(__name__)


def pods_api_server(options: HostOptions, port: int) -> str:
    """The API server as pods reach it: the host's address on the pod bridge."""
    return kubeconfig.server_url(port, options.gateway)


def environment(state: StateDir, options: HostOptions, node_name: str) -> render.Environment:
    from unistack.images import vmimage

    vm = vmimage.machine_dir()
    return render.Environment(
        registry=options.registry,
        internal_url=f"http://{options.gateway}:{options.openstack_port}",
        images_dir=str(state.images),
        vm_image_dir=str(vm) if vm.is_dir() else "",
        node_name=node_name,
        volumes_dir=str(state.volumes),
        cluster_dns=options.cluster_dns,
        gateway_port=options.openstack_port,
        pin_images=True,
        accounts=accounts.service_accounts(accounts.IN_PODS),
    )


def stored_digest(root: Path) -> Callable[[str], str | None]:
    """The digest of a release's control-plane image in the image store at `root` (the
    operator's `resolve`), None when that tag is not there."""
    from unistack.images import store as storage

    def resolve(release: str) -> str | None:
        try:  # a read-only mount in a pod: the store is made by the registry, not here
            return storage.ImageStore(root).resolve(render.IMAGE_REPOSITORY, release)
        except (storage.StoreError, OSError):
            return None

    return resolve


def published_objects(state: StateDir, options: HostOptions, port: int) -> list[dict]:
    """The ConfigMap and Secrets the control-plane pods mount, from the state directory."""
    from unistack.agent import node

    env = environment(state, options, options.node_name or node.default_node_name())
    config = yaml.safe_dump(accounts.pod_kubeconfig(kind.NAMESPACE, pods_api_server(options, port)))
    keys = {path.name: path.read_bytes() for path in state.fernet_keys.iterdir() if path.is_file()}
    password = state.admin_password.read_bytes()
    return [
        *accounts.rbac(kind.NAMESPACE, accounts.IN_PODS),
        render.settings_config_map(kind.NAMESPACE, state.settings.read_text(), env),
        *render.credential_secrets(kind.NAMESPACE, config.encode(), password, keys),
    ]


# What of a published object follows the state directory: replaced when it differs. (A
# ServiceAccount is only made: what the API server adds to it stays.)
PUBLISHED: dict[str, tuple[ResourceRef, tuple[str, ...]]] = {
    "ConfigMap": (CONFIGMAPS, ("data",)),
    "Secret": (SECRETS, ("data",)),
    "ServiceAccount": (SERVICEACCOUNTS, ()),
    "ClusterRole": (CLUSTERROLES, ("rules",)),
    "ClusterRoleBinding": (CLUSTERROLEBINDINGS, ("subjects",)),
}


async def publish(client: Client, objects: list[dict]) -> None:
    """Create or replace each object (they follow the state directory, the source of truth),
    once the API server answers."""
    from unistack.kube.main import ensure_namespace

    await ensure_namespace(client, kind.NAMESPACE, retry_period=0.2)
    for obj in objects:
        ref, fields = PUBLISHED[obj["kind"]]
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        try:
            stored = await client.get(ref, name, namespace)
        except NotFound:
            await client.create(ref, obj, namespace)
            continue
        if any(stored.get(field) != obj[field] for field in fields):
            obj = {**obj, "metadata": {**obj["metadata"], **_version_of(stored)}}
            await client.update(ref, obj)


def _version_of(stored: dict) -> dict:
    return {"resourceVersion": stored["metadata"]["resourceVersion"]}


async def ensure_controlplane(client: Client, release: str = __version__) -> None:
    await install_definition(client)
    with contextlib.suppress(AlreadyExists):
        await client.create(kind.REF, kind.new(release), kind.NAMESPACE)


async def run(
    client: Client, state: StateDir, options: HostOptions, port: int, identity: str = ""
) -> None:
    """The bootstrap: publish, make sure a ControlPlane exists, and run the operator while no
    controllers pod can (as `identity`, stable across restarts like the controllers')."""
    from unistack.agent import node

    await publish(client, published_objects(state, options, port))
    await ensure_controlplane(client)
    node_name = options.node_name or node.default_node_name()
    env = environment(state, options, node_name)
    identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
    gone = functools.partial(controllers_pod_gone, client)
    elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity, holder_gone=gone)
    resolve = stored_digest(state.images)
    await stand_by(
        elector,
        lambda: Operator(client, env, resolve=resolve).run(),
        lambda: controllers_ready(client),
    )


async def run_operator(client: Client, identity: str) -> None:
    """The operator in a controllers pod: elected, rendering with the published environment."""
    env = await published_environment(client)
    gone = functools.partial(controllers_pod_gone, client)
    elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity, holder_gone=gone)
    resolve = stored_digest(Path(render.IMAGES_AT))  # mounted when `env.pin_images`
    while True:
        await elector.run(lambda: Operator(client, env, resolve=resolve).run())
        log.warning("the control-plane operator stopped leading; campaigning again")


async def published_environment(client: Client, retry_period: float = 1.0) -> render.Environment:
    """The Environment in the ConfigMap `unistack-config`, once it is there."""
    while True:
        with contextlib.suppress(NotFound, TransportError):
            config = await client.get(CONFIGMAPS, render.CONFIG_MAP, kind.NAMESPACE)
            text = (config.get("data") or {}).get(render.ENVIRONMENT_KEY)
            if text:
                return render.Environment.from_json(text)
        log.info("waiting for %s/%s", kind.NAMESPACE, render.CONFIG_MAP)
        await asyncio.sleep(retry_period)


async def controllers_ready(client: Client) -> bool:
    """Whether a controllers pod can take the controllers' and the operator's Leases over
    from the bootstrap."""
    return await any_ready(client, CONTROLLERS)


async def any_ready(client: Client, service: presets.ControlPlaneService) -> bool:
    """Whether a pod of `service` is running, Ready and not going away."""
    listed = await client.list(PODS, kind.NAMESPACE, label_selector=render.label_selector(service))
    return any(
        not pod["metadata"].get("deletionTimestamp") and is_ready(pod)
        for pod in listed.get("items") or []
    )


def serve_gateway_bootstrap(kubeconfig_path: str, settings: gateway.GatewaySettings) -> None:
    """The supervisor's gateway (blocking): HAProxy on the OpenStack port while no gateway
    pod is Ready, as at the first start; stood down (a soft stop, which those pods, sharing
    the port, take over from) once one has been Ready at two checks; back whenever none is."""
    stand_in_for(GATEWAY, kubeconfig_path, lambda client: gateway.run_gateway(client, settings))


def serve_registry_bootstrap(kubeconfig_path: str, root: Path, host: str, port: int) -> None:
    """The supervisor's registry (blocking): serving the image store while no registry pod
    is Ready (the first pull of the control plane's image is from it), stood down (its
    requests in flight finished) once one has been Ready at two checks; back whenever none
    is."""
    from unistack.images import registry

    stand_in_for(REGISTRY, kubeconfig_path, lambda _client: registry.run(root, host, port))


def stand_in_for(
    service: presets.ControlPlaneService,
    kubeconfig_path: str,
    work: Callable[[Client], Coroutine[Any, Any, None]],
) -> None:
    """Run `work` (blocking, until SIGTERM or SIGINT) while no pod of `service`, which shares
    its port with it, is Ready (`leader.stand_in`)."""
    from unistack.client import kubeconfig as client_config
    from unistack.runtime import process

    process.configure_logging()
    allow_request_migration()

    async def main() -> None:
        client = Client(client_config.load_transport(kubeconfig_path))
        try:
            ready = functools.partial(any_ready, client, service)
            await process.run_until_signalled(stand_in(lambda: work(client), ready))
        finally:
            await client.close()

    asyncio.run(main())


def serve_registry_pod(root: Path, host: str, port: int) -> None:
    """A registry pod (blocking, until SIGTERM): the registry on the node's registry port,
    beside the other replicas, its heartbeat fresh while it accepts connections."""
    from unistack.runtime import process

    process.configure_logging()
    allow_request_migration()
    asyncio.run(process.run_until_signalled(registry_pod(root, host, port)))


async def registry_pod(
    root: Path,
    host: str,
    port: int,
    heartbeat: Path = Path(render.REGISTRY_HEARTBEAT),
    drain_seconds: float = render.GATEWAY_DRAIN_SECONDS,
) -> None:
    """Serve until cancelled; then say not Ready at once (the heartbeat file goes) while the
    registry serves on `drain_seconds` before it closes its listener."""
    from unistack.images import registry
    from unistack.runtime import process

    serving = asyncio.Event()

    async def accepting() -> None:
        if not serving.is_set():
            raise RuntimeError("the registry does not accept connections")

    running = asyncio.create_task(
        registry.run(root, host, port, drain_seconds=drain_seconds, serving=serving)
    )
    beat = asyncio.create_task(process.heartbeat(accepting, heartbeat, period=1.0))
    try:
        await asyncio.wait([running])
        running.result()
    finally:
        for task in (beat, running):  # not Ready first, then the drain
            task.cancel()
            await asyncio.wait([task])


def allow_request_migration(sysctl: Path = TCP_MIGRATE_REQ) -> bool:
    """Let a closing listener's queued connections move to another socket of its
    SO_REUSEPORT group (Linux 5.14+), so a gateway that stops refuses none; whether set."""
    try:
        sysctl.write_text("1")
    except OSError as error:
        log.warning("cannot set %s (%s): a stopping gateway may reset queued connections",
                    sysctl, error)  # fmt: skip
        return False
    return True


async def controllers_pod_gone(client: Client, identity: str) -> bool:
    """Whether a Lease's holder is a controllers pod that no longer exists (deleted at once,
    `--force`: it could not release). A pod's identity is its name; the bootstrap's (host
    name, `_`, a digest) can never be a pod's, so it is never taken for gone."""
    if "_" in identity or not identity.startswith(f"{CONTROLLERS.deployment}-"):
        return False
    try:
        await client.get(PODS, identity, kind.NAMESPACE)
    except NotFound:
        return True
    return False
