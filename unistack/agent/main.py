"""`unistack serve agent`: the per-host agent — this host's Node, its pods, its Services.

The agent registers the Node, heartbeats its Lease, watches the pods bound to it (field
selector `spec.nodeName`) and runs one `PodWorker` per pod; it serves logs and exec for the
API server (`server.AgentServer`) and, with the real runtime, programs Services into nftables
(`proxy.ServiceProxy`). The runtime is runc when the agent runs as root and runc is installed
(`--runtime auto`), else the fake one, and the Node says which. With the real runtime it also
runs OpenStack servers' instances (`instances.InstanceService`, system containers and, where
QEMU is installed, VMs) and says so in the Node's `unistack.io/instance-drivers` annotation.

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

from unistack.agent import instanceroutes
from unistack.agent import node as nodes
from unistack.agent.blockstorage import VolumeService
from unistack.agent.dhcp import DhcpAgent
from unistack.agent.fake import FakeRuntime
from unistack.agent.instances import InstanceService
from unistack.agent.l3 import L3Agent
from unistack.agent.networking import TenantNetworking
from unistack.agent.runtime import Container, ContainerRuntime
from unistack.agent.server import AgentServer
from unistack.agent.volumes import DnsConfig, node_resolvers
from unistack.agent.worker import PodWorker, WorkerSettings
from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.resources import PODS
from unistack.dataplane import nbd
from unistack.dataplane.instances import InstanceDriver, InstanceError
from unistack.dataplane.radvd import LinuxRadvd
from unistack.dataplane.routers import LinuxRouters
from unistack.dataplane.secgroups import SecurityGroupFirewall
from unistack.dataplane.tenantnet import NetworkWiring
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
    resolv_conf: str = "/etc/resolv.conf"  # the node's resolvers, for dnsPolicy Default
    cluster_domain: str = "cluster.local"
    registry: str = "127.0.0.1:5000"
    address: str = ""  # the Node's InternalIP; detected when empty
    port: int = 10250
    token: str = ""
    backoff_base: float = 10.0
    proxy: bool = True
    proxy_table: str = "unistack-proxy"
    instances: str = "auto"  # auto: run servers' instances when the runtime is runc; fake: never
    vxlan_port: int = 4789  # the UDP port tenant networks tunnel on between this cloud's hosts
    nbd_port: int = 10809  # the TCP port this host serves its volumes to other hosts on
    # external networks meet the outside here: this host holds their gateway addresses
    # (`networking.uplink_host`); the extra hosts of `up --hosts N` do not
    uplink: bool = True
    volume_pool_gb: int = 100  # the volume pool's sparse backing file (blockstorage)


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


def instance_drivers(settings: AgentSettings) -> dict[str, InstanceDriver]:
    """The drivers this host can run servers with: system containers, and VMs with QEMU."""
    from unistack.dataplane.containers import ContainerInstances

    drivers: dict[str, InstanceDriver] = {
        "container": ContainerInstances(
            settings.root / "servers" / "container",
            cgroup_parent=f"/unistack/{settings.node_name}/servers",
        )
    }
    if shutil.which("qemu-system-x86_64") and shutil.which("qemu-img"):
        try:
            from unistack.dataplane.qemu import QemuInstances
        except ImportError as error:
            log.warning("no qemu driver: %s", error)
        else:
            drivers["qemu"] = QemuInstances(settings.root / "servers" / "qemu")
    return drivers


def firewall_of(settings: AgentSettings) -> SecurityGroupFirewall:
    """This agent's security group tables, named after its bridge so that two clouds on one
    machine keep apart."""
    from unistack.dataplane import nftables, secgroups

    return secgroups.SecurityGroupFirewall(
        nftables.NftCommand(),
        table=f"unistack-sg-{settings.bridge}",
        conntrack_table=f"unistack-sgct-{settings.bridge}",
    )


def networks_record(settings: AgentSettings) -> Path:
    """Where the agent lists the tenant networks it wired here (for cleanup)."""
    return settings.root / "servers" / "networks.json"


def make_instances(
    settings: AgentSettings,
    address: str,
    client: Client | None,
    volumes: VolumeService | None = None,
) -> tuple[InstanceService, TenantNetworking | None]:
    """The compute service and the tenant networking its instances' ports need (root and
    runc are given); `volumes` is the pool its servers' volumes come from. Without a client
    (cleanup) there is no networking to watch."""
    from unistack.agent.networking import TenantNetworking
    from unistack.dataplane import netns
    from unistack.dataplane.tenantnet import LinuxL2
    from unistack.images.pull import ImageCache

    l2 = LinuxL2()
    networking = None
    if client is not None:
        networking = TenantNetworking(
            client,
            settings.node_name,
            address,
            l2,
            firewall_of(settings),
            record=networks_record(settings),
            vxlan_port=settings.vxlan_port,
            uplink=settings.uplink,
        )

    async def ensure_network(wiring: NetworkWiring) -> None:
        if networking is None:
            raise InstanceError("this agent has no tenant networking")
        await networking.ensure_network(wiring)

    service = InstanceService(
        settings.root / "servers",
        instance_drivers(settings),
        l2,
        ImageCache(settings.root / "images"),
        ensure_network=ensure_network,
        registry=settings.registry,
        namespaces=netns.LinuxNamespaces(),
        volumes=volumes,
        connections=nbd.NbdConnections(connections_dir(settings), settings.token),
        token=settings.token,
    )
    return service, networking


def connections_dir(settings: AgentSettings) -> Path:
    """Where other hosts' volumes are connected to this host's servers (`dataplane.nbd`)."""
    return settings.root / "servers" / "connections"


def l3_record(settings: AgentSettings) -> Path:
    """Where the L3 agent lists the routers and external networks it wired here."""
    return settings.root / "servers" / "routers.json"


def make_l3(
    settings: AgentSettings, client: Client, networking: TenantNetworking | None
) -> L3Agent:
    """The routers of this host (`l3`), plugging into the tenant networks' bridges."""
    from unistack.agent.l3 import L3Options

    ensure = networking.ensure_network if networking is not None else None
    options = L3Options(record=l3_record(settings), uplink=settings.uplink)
    agent = L3Agent(client, settings.node_name, linux_routers(settings), ensure, options)
    if networking is not None:
        networking.removed_hooks.append(agent.bridge_removed)
    return agent


def linux_routers(settings: AgentSettings) -> LinuxRouters:
    """This host's routers, radvd's files under its state directory."""
    return LinuxRouters(advertisements=LinuxRadvd(settings.root / "radvd"))


def dhcp_record(settings: AgentSettings) -> Path:
    """Where the DHCP agent lists the networks it served here."""
    return settings.root / "servers" / "dhcp.json"


def make_dhcp(
    settings: AgentSettings, client: Client, networking: TenantNetworking | None
) -> DhcpAgent | None:
    """The DHCP servers of this host (`dhcp`: dnsmasq per network), when dnsmasq is here."""
    from unistack.agent.dhcp import DhcpAgent, DhcpOptions
    from unistack.dataplane.dhcp import DNSMASQ, LinuxDhcp

    if shutil.which(DNSMASQ) is None:
        log.warning("no DHCP for tenant networks: dnsmasq (Debian's dnsmasq-base) is missing")
        return None
    ensure = networking.ensure_network if networking is not None else None
    options = DhcpOptions(record=dhcp_record(settings))
    dhcp = LinuxDhcp(settings.root / "dhcp")
    return DhcpAgent(client, settings.node_name, dhcp, ensure, options)


def make_volumes(settings: AgentSettings, address: str) -> VolumeService:
    """The block storage service over this host's pool (`<root>/volumes`): a loop-mounted
    xfs, or a plain directory where that cannot be had (decided at `VolumeService.start`);
    it serves volumes to other hosts on `address`."""
    from unistack.dataplane import volumepool
    from unistack.images.pull import ImageCache

    root = settings.root / "volumes"
    return VolumeService(
        volumepool.LoopXfsPool(root, settings.volume_pool_gb * 1024**3),
        ImageCache(settings.root / "images"),
        settings.registry,
        root / "scratch",
        fallback=volumepool.DirectoryPool(root / "directory"),
        exports=exports_of(settings, address),
    )


def exports_of(settings: AgentSettings, address: str = "") -> nbd.NbdExports:
    """The volumes this host serves to other hosts' servers."""
    root = settings.root / "volumes" / "exports"
    return nbd.NbdExports(root, address, settings.nbd_port, settings.token)


def cleanup_volumes(settings: AgentSettings) -> list[str]:
    """Unmount the volume pool and detach its loop devices; the backing file stays, so
    the volumes are there again at the next `up`."""
    from unistack.dataplane import volumepool

    root = settings.root / "volumes"
    exports_of(settings).stop()
    if not (root / "pool.img").exists():
        return []
    try:
        volumepool.LoopXfsPool(root, 0).teardown()
    except volumepool.PoolError as error:
        log.warning("volume pool teardown: %s; releasing every loop device under it", error)
        volumepool.cleanup(root)
    return [f"unmounted the volume pool {root / 'pool'}"]


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
        node_servers, node_searches = node_resolvers(_read_text(settings.resolv_conf))
        dns = DnsConfig(
            (settings.cluster_dns,), (settings.cluster_domain,),
            node_nameservers=node_servers, node_searches=node_searches,
        )  # fmt: skip
        self.worker_settings = WorkerSettings(
            settings.node_name, self.address, dns, backoff_base=settings.backoff_base
        )
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={settings.node_name}")
        self.server = AgentServer(self.locate, self.exec_argv, settings.token)
        self.instances: InstanceService | None = None
        self.networking: TenantNetworking | None = None
        self.l3: L3Agent | None = None
        self.dhcp: DhcpAgent | None = None
        self.volumes: VolumeService | None = None
        if runtime.name == "runc":  # the block storage service: this host's volume pool
            self.volumes = make_volumes(settings, self.address)
            self.volumes.add_routes(self.server.app)
        if runtime.name == "runc" and settings.instances != "fake":
            self.instances, self.networking = make_instances(
                settings, self.address, client, self.volumes
            )
            instanceroutes.add_routes(self.server.app, self.instances)
            self.l3 = make_l3(settings, client, self.networking)
            self.dhcp = make_dhcp(settings, client, self.networking)
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
        pool_bytes = await self.volumes.start() if self.volumes is not None else 0
        registered = await nodes.register(
            self.client,
            nodes.node_object(
                self.settings.node_name,
                self.address,
                self.settings.port,
                self.settings.pod_cidr,
                self.runtime.name,
                self.settings.root,
                tuple(self.instances.drivers) if self.instances else (),
                volume_pool=pool_bytes,
                uplink=self.settings.uplink,
            ),
        )
        await self.server.start("0.0.0.0", self.settings.port)
        if self.instances is not None:
            resumed = await self.instances.resume()
            if resumed:
                log.info("resumed %d instances", len(resumed))
        self.pods.add_handlers(self._on_add, self._on_update, self._on_delete)
        async with asyncio.TaskGroup() as group:
            group.create_task(nodes.heartbeat(self.client, registered))
            group.create_task(self.pods.run())
            if self.settings.proxy and self.runtime.name == "runc":
                group.create_task(self._run_proxy())
            if self.runtime.name == "runc":  # root, with real networking
                group.create_task(self._run_node_routes())
            if self.networking is not None:
                group.create_task(self.networking.run())
            if self.l3 is not None:
                group.create_task(self.l3.run())
            if self.dhcp is not None:
                group.create_task(self.dhcp.run())

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
    done += await cleanup_instances(settings)
    done += cleanup_volumes(settings)
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


async def cleanup_instances(settings: AgentSettings) -> list[str]:
    """Stop the servers' instances (their disks and the wish to run stay, so the next `up`
    boots them again), then remove every tenant bridge, VXLAN and port device, and the
    security group tables."""
    if not (settings.root / "servers").exists():
        return []
    from unistack.agent.networking import recorded_networks
    from unistack.dataplane.tenantnet import LinuxL2

    done = []
    service, _ = make_instances(settings, "", None)
    stopped = await service.stop_all()
    for driver in service.drivers.values():
        cleanup_all = getattr(driver, "cleanup_all", None)
        if cleanup_all is not None:
            await cleanup_all()
    if stopped:
        done.append(f"stopped {len(stopped)} server instances")
    ended = nbd.NbdConnections(connections_dir(settings), "").cleanup()
    if ended:
        done.append(f"ended {len(ended)} connections to other hosts' volumes")
    from unistack.agent import l3

    done += l3.cleanup(l3_record(settings), linux_routers(settings))
    from unistack.agent import dhcp
    from unistack.dataplane.dhcp import LinuxDhcp

    done += dhcp.cleanup(dhcp_record(settings), LinuxDhcp(settings.root / "dhcp"))
    l2 = LinuxL2()
    networks = recorded_networks(networks_record(settings))
    for network_id in networks:
        l2.remove_network(network_id)
    networks_record(settings).unlink(missing_ok=True)
    if networks:
        done.append(f"removed {len(networks)} tenant network bridges")
    await firewall_of(settings).remove()
    return done


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
