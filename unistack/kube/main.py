"""`unistack serve controllers`: the kube controllers, run while this process is elected.

The controllers run only while this process leads the Lease `kube-system/unistack-controllers`
(several replicas may run; one acts). Losing the lease stops them and campaigns again; SIGTERM
or SIGINT stops them, releases the lease and returns. Everything goes through the API named by
the kubeconfig (`unistack.client.kubeconfig`); the controllers are `unistack.kube.garbagecollector`,
`unistack.kube.namespace`, the workload controllers (`replicaset`, `deployment`,
`statefulset`, `daemonset`, `job`), `unistack.kube.endpointslices` (Endpoints and
EndpointSlices), `unistack.kube.volumebinding` (PV/PVC binding), `unistack.kube.nodelifecycle`
(silent hosts marked unreachable), `unistack.kube.podgc` (pods no node agent will finish),
`unistack.kube.provisioner` (local-path volumes, when
given a directory), `unistack.kube.clusterroleaggregation` (the aggregated ClusterRoles'
rules), `unistack.kube.serviceaccounts` (each namespace's `default` ServiceAccount and, when
the kubeconfig names the API server's CA, its `kube-root-ca.crt`), `unistack.kube.tokens`
(service-account token Secrets) and the scheduler
(`unistack.kube.scheduler`), sharing one informer per kind.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from unistack.client import kubeconfig
from unistack.client.api import AlreadyExists, Client
from unistack.client.resources import NAMESPACES
from unistack.client.transport import TransportError
from unistack.kube.clusterroleaggregation import ClusterRoleAggregationController
from unistack.kube.daemonset import DaemonSetController
from unistack.kube.deployment import DeploymentController
from unistack.kube.endpointslices import EndpointsController
from unistack.kube.garbagecollector import GarbageCollector
from unistack.kube.job import JobController
from unistack.kube.namespace import NamespaceController
from unistack.kube.nodelifecycle import NodeLifecycleController
from unistack.kube.podgc import PodGarbageCollector
from unistack.kube.provisioner import LocalPathProvisioner
from unistack.kube.replicaset import ReplicaSetController
from unistack.kube.scheduler.scheduler import Scheduler
from unistack.kube.serviceaccounts import RootCAPublisher, ServiceAccountController
from unistack.kube.statefulset import StatefulSetController
from unistack.kube.tokens import TokensController
from unistack.kube.volumebinding import VolumeBindingController
from unistack.runtime import process
from unistack.runtime.informer import SharedInformers
from unistack.runtime.leader import LeaderElector, stand_by

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "unistack-controllers"

log = logging.getLogger(__name__)


Extra = Callable[[Client], Coroutine[Any, Any, None]]
# Whether the pods that take the controllers over are ready (`cli.selfhost`).
Successors = Callable[[Client], Awaitable[bool]]
# Whether a Lease's holder is gone for good (`cli.selfhost`: its pod was deleted).
HolderGone = Callable[[Client, str], Awaitable[bool]]


def run_controllers(
    kubeconfig_path: str,
    volumes_root: Path | None = None,
    extra: Extra | None = None,
    identity: str = "",
    successors: Successors | None = None,
    holder_gone: HolderGone | None = None,
) -> None:
    """Run the controllers until SIGTERM or SIGINT (blocking); with `volumes_root`, also the
    local-path provisioner, its volumes' directories under that root; with `extra`, that
    work too (it elects itself: the control-plane operator), on the same client.

    `identity` is this candidate's name in the Lease (default: the hostname and a random
    uuid). A supervisor that restarts one candidate per host can give a stable one, so the
    restarted process takes its own lease back at once instead of waiting for it to expire.
    With `successors`, it is the self-hosted control plane's bootstrap: it leads only while
    none of the controllers' pods is ready (`leader.stand_by`).
    """
    process.configure_logging()
    identity = identity or default_identity()
    asyncio.run(_main(kubeconfig_path, volumes_root, extra, identity, successors, holder_gone))


async def _main(
    kubeconfig_path: str,
    volumes_root: Path | None,
    extra: Extra | None,
    identity: str,
    successors: Successors | None,
    holder_gone: HolderGone | None,
) -> None:
    context = kubeconfig.load(kubeconfig_path)
    client = Client(context.transport())
    try:
        work = run_elected(
            client,
            identity,
            volumes_root=volumes_root,
            root_ca=context.certificate_authority(),
            successors=successors,
            holder_gone=holder_gone,
        )
        if extra is not None:
            work = _together(work, extra(client))
        await process.run_until_signalled(work)
    finally:
        await client.close()


async def _together(*work: Coroutine[Any, Any, None]) -> None:
    async with asyncio.TaskGroup() as group:
        for coroutine in work:
            group.create_task(coroutine)


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


async def run_all(
    client: Client, volumes_root: Path | None = None, root_ca: str | None = None
) -> None:
    """Every controller of this process, until cancelled; `root_ca` is the PEM published
    as every namespace's `kube-root-ca.crt` (none without it)."""
    shared = SharedInformers(client)  # one watch per kind for all of them
    async with asyncio.TaskGroup() as group:
        if volumes_root is not None:
            provisioner = LocalPathProvisioner(client, volumes_root, informers=shared)
            group.create_task(provisioner.run())
        if root_ca is not None:
            group.create_task(RootCAPublisher(client, root_ca, informers=shared).run())
        group.create_task(GarbageCollector(client).run())
        group.create_task(NamespaceController(client, informers=shared).run())
        group.create_task(ReplicaSetController(client, informers=shared).run())
        group.create_task(DeploymentController(client, informers=shared).run())
        group.create_task(Scheduler(client, informers=shared).run())
        group.create_task(EndpointsController(client, informers=shared).run())
        group.create_task(StatefulSetController(client, informers=shared).run())
        group.create_task(DaemonSetController(client, informers=shared).run())
        group.create_task(JobController(client, informers=shared).run())
        group.create_task(VolumeBindingController(client, informers=shared).run())
        group.create_task(NodeLifecycleController(client, informers=shared).run())
        group.create_task(PodGarbageCollector(client, informers=shared).run())
        group.create_task(ClusterRoleAggregationController(client, informers=shared).run())
        group.create_task(ServiceAccountController(client, informers=shared).run())
        group.create_task(TokensController(client, root_ca, informers=shared).run())


async def run_elected(
    client: Client,
    identity: str,
    *,
    lease_duration: float = 15,
    renew_deadline: float = 10,
    retry_period: float = 2,
    volumes_root: Path | None = None,
    root_ca: str | None = None,
    successors: Successors | None = None,
    holder_gone: HolderGone | None = None,
) -> None:
    """Campaign for the lease and run the controllers while leading, forever (with
    `successors`, only while they cannot)."""
    await ensure_namespace(client, LEASE_NAMESPACE)
    elector = LeaderElector(
        client,
        LEASE_NAMESPACE,
        LEASE_NAME,
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        holder_gone=None if holder_gone is None else functools.partial(holder_gone, client),
    )

    def controllers() -> Coroutine[Any, Any, None]:
        return run_all(client, volumes_root, root_ca)

    if successors is not None:
        await stand_by(elector, controllers, lambda: successors(client))
    while True:
        await elector.run(controllers)
        log.warning("stopped leading; campaigning again")


async def ensure_namespace(client: Client, name: str, retry_period: float = 0.2) -> None:
    """Create the namespace unless it exists, waiting for the API to come up."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    while True:
        try:
            await client.create(NAMESPACES, namespace)
            return
        except AlreadyExists:
            return
        except TransportError as exc:
            log.info("waiting for the API server: %s", exc)
            await asyncio.sleep(retry_period)
