"""`unistack serve agent`: the per-host agent — this host's Node, its pods, its Services.

The agent registers the Node, heartbeats its Lease, watches the pods bound to it (field
selector `spec.nodeName`) and runs one `PodWorker` per pod; it serves logs and exec for the
API server (`server.AgentServer`) and, with the real runtime, programs Services into nftables
(`proxy.ServiceProxy`). The runtime is runc when the agent runs as root and runc is installed
(`--runtime auto`), else the fake one, and the Node says which.

Stopping the agent leaves containers running, as stopping a kubelet does: a restarted agent
adopts them. `cleanup` (run by `unistack down`) removes every container, network namespace,
mount, cgroup, bridge and nftables table the agent made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unistack.agent import node as nodes
from unistack.agent.fake import FakeRuntime
from unistack.agent.runtime import Container, ContainerRuntime
from unistack.agent.server import AgentServer
from unistack.agent.volumes import DnsConfig
from unistack.agent.worker import PodWorker, WorkerSettings
from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.resources import PODS
from unistack.runtime import events, process
from unistack.runtime.informer import Informer

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass(frozen=True)
class AgentSettings:
    root: Path
    node_name: str = field(default_factory=nodes.default_node_name)
    runtime: str = "auto"  # auto | runc | fake
    pod_cidr: str = "10.244.0.0/24"
    cluster_cidr: str = "10.244.0.0/16"
    bridge: str = "unistack0"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    registry: str = "127.0.0.1:5000"
    address: str = ""  # the Node's InternalIP; detected when empty
    port: int = 10250
    token: str = ""
    backoff_base: float = 10.0
    proxy: bool = True
    proxy_table: str = "unistack-proxy"


def can_run_containers() -> tuple[bool, str]:
    """Whether the runc runtime can work here, and why not."""
    if os.geteuid() != 0:
        return False, "not running as root"
    if shutil.which("runc") is None:
        return False, "runc is not installed"
    if not Path("/sys/fs/cgroup/memory").is_dir():
        return False, "no cgroup v1 memory hierarchy"
    return True, ""


def gateway_of(pod_cidr: str) -> str:
    import ipaddress

    return str(next(ipaddress.ip_network(pod_cidr).hosts()))


def make_runtime(settings: AgentSettings) -> ContainerRuntime:
    able, why = can_run_containers()
    if settings.runtime == "fake" or (settings.runtime == "auto" and not able):
        if settings.runtime == "auto":
            log.warning("using the fake runtime: %s", why)
        return FakeRuntime(settings.root, settings.pod_cidr)
    if not able:
        raise SystemExit(f"the runc runtime cannot run here: {why}")
    from unistack.agent.runc import RuncRuntime
    from unistack.dataplane import cniconf
    from unistack.images.pull import ImageCache

    conf_dir = settings.root / "cni" / "net.d"
    path = cniconf.write_default_conf(
        str(conf_dir),
        f"unistack-{settings.bridge}",
        settings.bridge,
        settings.pod_cidr,
        gateway_of(settings.pod_cidr),
        settings.cluster_cidr,
        str(settings.root / "ipam"),
    )
    conf = cniconf.load_conflist(path)
    return RuncRuntime(
        settings.root,
        cni_conf=conf,
        cni_path=[install_cni_plugin(settings.root)],
        images=ImageCache(settings.root / "images"),
        default_registry=settings.registry,
        cgroup_parent=f"/unistack/{settings.node_name}",
    )


def install_cni_plugin(root: Path) -> str:
    """Install the thin CNI plugin, which hands its calls to `cni_socket(root)`; its dir."""
    from unistack.dataplane import cniconf

    return cniconf.install_plugin(str(root / "cni" / "bin"), cni_socket(root))


def cni_socket(root: Path) -> str:
    """Where `unistack serve agent` serves the CNI plugin's calls (see cni.server)."""
    from unistack.dataplane import cniconf

    return cniconf.plugin_socket(str(root / "cni"))


class Agent:
    def __init__(self, client: Client, settings: AgentSettings, runtime: ContainerRuntime) -> None:
        self.client = client
        self.settings = settings
        self.runtime = runtime
        self.address = settings.address or nodes.host_ip()
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        dns = DnsConfig((settings.cluster_dns,), (settings.cluster_domain,))
        self.worker_settings = WorkerSettings(
            settings.node_name, self.address, dns, backoff_base=settings.backoff_base
        )
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={settings.node_name}")
        self.server = AgentServer(self.locate, self.exec_argv, settings.token)
        self.recorder = events.EventRecorder(client, "kubelet", settings.node_name)

    # --- pods -------------------------------------------------------------------------------

    def _on_add(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        worker = PodWorker(
            self.client, self.runtime, self.worker_settings, pod, self.event, on_done=self._done
        )
        self.workers[uid] = worker
        meta = pod["metadata"]
        self.by_name[(meta.get("namespace", ""), meta["name"])] = uid
        self.tasks[uid] = asyncio.create_task(worker.run(), name=f"pod {meta['name']}")

    def _on_update(self, old: Obj, new: Obj) -> None:
        self._on_add(new)

    def _on_delete(self, pod: Obj) -> None:
        worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.deleted()

    def _done(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        self.tasks.pop(uid, None)
        if worker is not None:
            meta = worker.pod["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if self.by_name.get(key) == uid:
                del self.by_name[key]

    # --- events -----------------------------------------------------------------------------

    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        self.recorder.record(obj, "Pod", kind, reason, message)

    # --- logs and exec ----------------------------------------------------------------------

    def locate(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[Path | None, Container | None, str]:
        uid = self.by_name.get((namespace, pod))
        worker = self.workers.get(uid or "")
        if worker is None:
            return None, None, f'pod "{pod}" is not running on node {self.settings.node_name}'
        for run in [*worker.inits, *worker.apps]:
            if run.track.name != container:
                continue
            if previous:
                if run.track.last_exit is None:
                    return (
                        None,
                        None,
                        (f'previous terminated container "{container}" in pod "{pod}" not found'),
                    )
                attempt = run.track.restart_count - (
                    0 if run.container is None and run.track.exit else 1
                )
                attempt = max(attempt, 0)
                return self._log_path(worker, container, attempt), None, ""
            if run.container is not None:
                return run.container.log_path, run.container, ""
            if run.track.exit is not None:
                return self._log_path(worker, container, run.track.restart_count), None, ""
            reason = run.track.waiting_reason or "ContainerCreating"
            return (
                None,
                None,
                (f'container "{container}" in pod "{pod}" is waiting to start: {reason}'),
            )
        return None, None, f"container {container} is not valid for pod {pod}"

    def _log_path(self, worker: PodWorker, container: str, attempt: int) -> Path | None:
        if worker.sandbox is None:
            return None
        return worker.sandbox.pod_dir / "logs" / container / f"{attempt}.log"

    def exec_argv(self, container: Container, argv: list[str], tty: bool) -> list[str]:
        return self.runtime.exec_argv(container, argv, tty)

    # --- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        self.settings.root.mkdir(parents=True, exist_ok=True)
        registered = await nodes.register(
            self.client,
            nodes.node_object(
                self.settings.node_name,
                self.address,
                self.settings.port,
                self.settings.pod_cidr,
                self.runtime.name,
                self.settings.root,
            ),
        )
        await self.server.start("0.0.0.0", self.settings.port)
        self.pods.add_handlers(self._on_add, self._on_update, self._on_delete)
        async with asyncio.TaskGroup() as group:
            group.create_task(nodes.heartbeat(self.client, registered))
            group.create_task(self.pods.run())
            if self.settings.proxy and self.runtime.name == "runc":
                group.create_task(self._run_proxy())
            if self.runtime.name == "runc":  # root, with real networking
                group.create_task(self._run_node_routes())

    async def _run_proxy(self) -> None:
        from unistack.agent.proxy import ProxyOptions, ServiceProxy
        from unistack.agent.proxyrules import ProxySettings
        from unistack.dataplane.nftables import NftCommand

        rules = ProxySettings(
            table=self.settings.proxy_table,
            iifnames=(self.settings.bridge,),
            cluster_cidr=self.settings.cluster_cidr,
        )
        await ServiceProxy(self.client, NftCommand(), ProxyOptions(rules=rules)).run()

    async def _run_node_routes(self) -> None:
        from unistack.agent.noderoutes import NodeRoutes

        await NodeRoutes(
            self.client, self.settings.node_name, self.address, self.settings.root
        ).run()

    async def stop(self) -> None:
        await self.server.stop()
        for task in self.tasks.values():
            task.cancel()


def load_token(path: Path) -> str:
    """The node-proxy token `unistack up` wrote (empty when there is none: nothing is served)."""
    return path.read_text().strip() if path.exists() else ""


def run_agent(kubeconfig_path: str, settings: AgentSettings) -> None:
    """Run the agent until SIGTERM or SIGINT (blocking)."""
    process.configure_logging()
    asyncio.run(_main(kubeconfig_path, settings))


async def _main(kubeconfig_path: str, settings: AgentSettings) -> None:
    settings.root.mkdir(parents=True, exist_ok=True)  # the runtime keeps its state there
    client = Client(kubeconfig.load_transport(kubeconfig_path))
    agent = Agent(client, settings, make_runtime(settings))
    try:
        await process.run_until_signalled(agent.run())
    finally:
        await agent.stop()
        await client.close()


async def cleanup(settings: AgentSettings) -> list[str]:
    """Remove everything the agent made on this host; what was removed, for `down`."""
    done: list[str] = []
    able, _ = can_run_containers()
    if not able:
        return done
    from unistack.agent.runc import RuncRuntime, remove_cgroups
    from unistack.dataplane import bridge, cniconf, masquerade, nftables
    from unistack.images.pull import ImageCache

    if (settings.root / "runc").exists():
        conf_file = settings.root / "cni" / "net.d" / f"10-unistack-{settings.bridge}.conflist"
        runtime = RuncRuntime(
            settings.root,
            cni_conf=cniconf.load_conflist(str(conf_file)) if conf_file.exists() else {},
            cni_path=[install_cni_plugin(settings.root)],
            images=ImageCache(settings.root / "images"),
            default_registry=settings.registry,
            cgroup_parent=f"/unistack/{settings.node_name}",
        )
        await runtime.cleanup_all()
        done.append("removed pod containers, network namespaces and mounts")
    from unistack.agent.noderoutes import remove_recorded

    removed = remove_recorded(settings.root)
    if removed:
        done.append(f"removed {len(removed)} routes to other nodes' pods")
    remove_cgroups(f"/unistack/{settings.node_name}")
    remove_cgroups("/unistack", only_if_empty=True)
    if bridge.link_exists(settings.bridge):
        bridge.delete_bridge(settings.bridge)
        done.append(f"removed bridge {settings.bridge}")
    driver = nftables.NftCommand()
    tables = {name for _, name in await driver.list_tables("unistack")}
    if settings.proxy_table in tables:
        await driver.delete_table("ip", settings.proxy_table)
        done.append(f"removed nftables table {settings.proxy_table}")
    if masquerade.table_name(settings.bridge) in tables:
        masquerade.remove(settings.bridge)
        done.append(f"removed nftables table {masquerade.table_name(settings.bridge)}")
    return done
