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
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid

import yaml

from unistack import __version__
from unistack.cli import kubeconfig
from unistack.cli.hostoptions import HostOptions
from unistack.cli.statedir import StateDir
from unistack.client.api import AlreadyExists, Client, NotFound
from unistack.client.resources import CONFIGMAPS, NAMESPACES, SECRETS
from unistack.controlplane import kind, render
from unistack.controlplane.operator import Operator, install_definition
from unistack.runtime.leader import LeaderElector

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "unistack-controlplane-operator"

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
    )


def published_objects(state: StateDir, options: HostOptions, port: int) -> list[dict]:
    """The ConfigMap and Secrets the control-plane pods mount, from the state directory."""
    access = kubeconfig.load_access(state.kubeconfig)
    in_pods = kubeconfig.ApiAccess(pods_api_server(options, port), access.ca_pem, access.token)
    config = yaml.safe_dump(kubeconfig.render_kubeconfig(in_pods)).encode()
    keys = {path.name: path.read_bytes() for path in state.fernet_keys.iterdir() if path.is_file()}
    password = state.admin_password.read_bytes()
    return [
        render.settings_config_map(kind.NAMESPACE, state.settings.read_text()),
        *render.credential_secrets(kind.NAMESPACE, config, password, keys),
    ]


async def publish(client: Client, objects: list[dict]) -> None:
    """Create or replace each object (they follow the state directory, the source of truth)."""
    with contextlib.suppress(AlreadyExists):
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.NAMESPACE}}
        await client.create(NAMESPACES, namespace)
    for obj in objects:
        ref = CONFIGMAPS if obj["kind"] == "ConfigMap" else SECRETS
        name = obj["metadata"]["name"]
        try:
            stored = await client.get(ref, name, kind.NAMESPACE)
        except NotFound:
            await client.create(ref, obj, kind.NAMESPACE)
            continue
        if stored.get("data") != obj["data"]:
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
    """Publish, make sure a ControlPlane exists, and run the operator while elected (as
    `identity`, stable across restarts like the controllers', or a random one)."""
    from unistack.agent import node

    await publish(client, published_objects(state, options, port))
    await ensure_controlplane(client)
    node_name = options.node_name or node.default_node_name()
    env = environment(state, options, node_name)
    identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
    elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity)
    while True:
        await elector.run(lambda: Operator(client, env).run())
        log.warning("the control-plane operator stopped leading; campaigning again")
