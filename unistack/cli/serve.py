"""`unistack serve <service>`: run one control-plane service in this process.

These are the entrypoints the supervisor starts (see `launch`); later each becomes a pod.
`serve apiserver` runs the API server over the state directory's store, certificates and
token file; `serve controllers` runs the garbage collector and namespace controller against
the API through the kubeconfig, like any other client. The services are imported only here,
when they run, so the rest of the CLI starts quickly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from unistack.cli import supervisor
from unistack.cli.statedir import StateDir

if TYPE_CHECKING:
    from unistack.agent.main import AgentSettings
    from unistack.cli.hostoptions import HostOptions
    from unistack.client.api import Client


def _missing(paths: list[Path], console: Console) -> bool:
    absent = [str(path) for path in paths if not path.exists()]
    if absent:
        console.print(f"[red]missing {', '.join(absent)}[/]; run `unistack up` first")
    return bool(absent)


def listen_address(options: HostOptions) -> str:
    """Loopback for one host; every address when extra hosts reach in over the underlay."""
    return "127.0.0.1" if options.hosts == 1 else "0.0.0.0"


def api_listen_address(options: HostOptions) -> str:
    """The API server's: also every address when control-plane pods reach it from the pod
    network (their kubeconfig names the host's bridge address, `cli.selfhost`)."""
    return "0.0.0.0" if options.self_hosted else listen_address(options)


def serve_apiserver(state: StateDir, port: int, console: Console) -> int:
    supervisor.bind_to_supervisor()
    if _missing([state.serving_cert, state.serving_key, state.tokens], console):
        return 1
    from unistack.apiserver import server
    from unistack.cli import hostoptions

    options = hostoptions.load(state)
    listen = api_listen_address(options)
    settings = server.ServerSettings(
        db_path=str(state.store_db),
        host=listen,
        port=port,
        certfile=str(state.serving_cert),
        keyfile=str(state.serving_key),
        token_file=str(state.tokens),
        node_proxy_token_file=str(state.agent_token) if state.agent_token.exists() else None,
        key_repository=str(state.fernet_keys),
        # pods reach it through the `kubernetes` Service at the host's pod-bridge address
        advertise_address=options.gateway if listen != "127.0.0.1" else "",
        service_account_key_file=(
            str(state.service_account_key) if state.service_account_key.exists() else None
        ),
    )
    from unistack.controlplane import accounts

    server.serve(settings, tuple(accounts.bootstrap_policy()))
    return 0


def serve_controllers(
    state: StateDir, console: Console, *, bootstrap: bool = False, volumes_dir: str = ""
) -> int:
    """The Kubernetes controllers; self-hosted, also the control-plane operator: as the
    supervisor's `bootstrap` (publishing the state directory, standing in for the
    controllers' pods, `cli.selfhost`), or as one of those pods. `volumes_dir` is where
    `local-path` volumes go (default the state directory's `volumes`)."""
    supervisor.bind_to_supervisor()
    from unistack.cli import hostoptions
    from unistack.kube import main as kube_main

    options = hostoptions.load(state)
    # the supervisor's (always, without pods) as its own user; a pod as its ServiceAccount
    supervised = bootstrap or not options.self_hosted
    config = supervised_kubeconfig(state, "controllers") if supervised else state.kubeconfig
    if _missing([config], console):
        return 1
    volumes = Path(volumes_dir) if volumes_dir else state.volumes
    if not options.self_hosted:
        kube_main.run_controllers(str(config), volumes, None, _host_identity(state))
        return 0
    from unistack.cli import selfhost

    if not bootstrap:  # a controllers pod: its name, so a restarted container takes its
        pod = os.environ.get("POD_NAME") or socket.gethostname()  # leases back at once

        async def operator(client: Client) -> None:
            from unistack.controlplane import render
            from unistack.runtime import process

            beat = process.heartbeat(
                lambda: client.get_path("/version"), Path(render.CONTROLLERS_HEARTBEAT)
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(selfhost.run_operator(client, pod))
                group.create_task(beat)  # the pod's probes read its age

        kube_main.run_controllers(
            str(config), volumes, operator, pod,
            holder_gone=selfhost.controllers_pod_gone,
        )  # fmt: skip
        return 0
    port = int(state.load_settings().get("port") or 6443)
    identity = _host_identity(state)

    async def publish_and_operate(client: Client) -> None:
        await selfhost.run(client, state, options, port, identity)

    kube_main.run_controllers(
        str(config), volumes, publish_and_operate, identity,
        selfhost.controllers_ready, selfhost.controllers_pod_gone,
    )  # fmt: skip
    return 0


def _host_identity(state: StateDir) -> str:
    """One controllers process per state directory (the supervisor's): a stable identity
    lets a restarted one take its leases back at once, so the controllers resume in seconds."""
    return f"{socket.gethostname()}_{hashlib.sha256(bytes(state.root)).hexdigest()[:12]}"


def agent_settings(state: StateDir, host: int = 1) -> AgentSettings:
    """The agent of host `host`: 1 is this machine, 2..N the namespaces of `up --hosts N`."""
    from unistack.agent.main import AgentSettings, load_token
    from unistack.cli import hostoptions, hosts

    options = hostoptions.load(state)
    node_name = main_node_name(options)
    settings = AgentSettings(
        root=state.agent,
        node_name=node_name,
        runtime=hostoptions.DRIVERS.get(options.driver, "auto"),
        pod_cidr=options.pod_cidr,
        cluster_cidr=options.cluster_cidr,
        bridge=options.bridge,
        cluster_dns=options.cluster_dns,
        registry=options.registry,
        port=options.agent_port,
        token=load_token(state.agent_token),
        proxy_table=f"unistack-proxy-{options.bridge}",
        instances=options.instances,
        vxlan_port=options.vxlan_port,
        nbd_port=options.nbd_port,
    )
    if options.hosts == 1:
        return settings
    gateway = hosts.underlay_gateway(options)
    if host == 1:
        return dataclasses.replace(settings, address=gateway)
    extra = hosts.extra_hosts(options, node_name)[host - 2]
    return dataclasses.replace(
        settings,
        root=extra.root(state),
        node_name=extra.node_name,
        pod_cidr=extra.pod_cidr,
        registry=f"{gateway}:{options.registry_port}",
        address=extra.address,
        uplink=False,
    )


def serve_agent(state: StateDir, console: Console, host: int = 1) -> int:
    supervisor.bind_to_supervisor()
    kubeconfig = node_kubeconfig(state, host)
    if _missing([kubeconfig], console):
        return 1
    from unistack.agent import main as agent_main
    from unistack.integration.cni import server as cni_server

    settings = agent_settings(state, host)
    # The agent's CNI plugin hands its calls to this process (see cni.delegate).
    with cni_server.serving(agent_main.cni_socket(settings.root)):
        agent_main.run_agent(str(kubeconfig), settings)
    return 0


def clean_agent(state: StateDir, console: Console, host: int) -> int:
    """What `down` runs inside an extra host's namespace: that agent's cleanup."""
    import asyncio

    from unistack.agent import main as agent_main

    for line in asyncio.run(agent_main.cleanup(agent_settings(state, host))):
        console.print(line)
    return 0


def supervised_kubeconfig(state: StateDir, part: str) -> Path:
    """The kubeconfig of the supervisor's process `part`: its own user's token (`up.prepare`
    writes it; `controlplane.accounts.SUPERVISED` says what each may do), not the admin's."""
    return state.root / "supervised" / part / "kubeconfig"


def node_kubeconfig(state: StateDir, host: int) -> Path:
    """Host `host`'s agent's kubeconfig: its node's token (`up.prepare` writes it), and the
    API server at the underlay address for an extra host."""
    return state.root / "nodes" / str(host) / "kubeconfig"


def main_node_name(options: HostOptions) -> str:
    """Host 1's Node: `--node-name`, else the machine's."""
    from unistack.agent import node

    return options.node_name or node.default_node_name()


def node_names(options: HostOptions) -> list[str]:
    """The Nodes of this machine's hosts, host 1 first."""
    from unistack.cli import hosts

    name = main_node_name(options)
    return [name, *(extra.node_name for extra in hosts.extra_hosts(options, name))]


def serve_registry(
    state: StateDir, console: Console, *, in_pod: bool = False, bootstrap: bool = False
) -> int:
    """The image registry on the registry port: alone, or as a replica of the control
    plane's `registry` Deployment (`in_pod`), or, `bootstrap`, the supervisor's, serving only
    while no such replica is Ready. The supervisor's builds the built-in images first."""
    supervisor.bind_to_supervisor()
    from unistack.cli import hostoptions, selfhost
    from unistack.images import registry

    options = hostoptions.load(state)
    host, port = listen_address(options), options.registry_port
    if in_pod:
        selfhost.serve_registry_pod(state.images, host, port)
        return 0
    config = supervised_kubeconfig(state, "registry")
    if bootstrap and _missing([config], console):
        return 1
    _ensure_builtin_images(state)
    if bootstrap:
        selfhost.serve_registry_bootstrap(str(config), state.images, host, port)
    else:
        registry.serve(state.images, host, port)
    return 0


def _ensure_builtin_images(state: StateDir) -> None:
    from unistack.images import build
    from unistack.images.store import ImageStore

    store, cache = ImageStore(state.images), build.machine_cache_if_writable()
    build.ensure_builtin_images(store, [build.BUSYBOX_IMAGE], cache=cache)
    # The Python image takes seconds to build the first time on a machine: serve meanwhile
    # (a pod asking for it backs off and retries until it is there).
    rest = [spec for spec in build.BUILTIN_IMAGES if spec is not build.BUSYBOX_IMAGE]
    threading.Thread(
        target=build.ensure_in_background, args=(store, rest, cache), daemon=True
    ).start()


def serve_openstack(
    state: StateDir,
    console: Console,
    *,
    services: tuple[str, ...] = (),
    host: str | None = None,
    port: int | None = None,
    internal_url: str = "",
    kubeconfig: str | None = None,
    key_repository: str | None = None,
    admin_password_file: str | None = None,
    drain_seconds: float = 0.0,
) -> int:
    """The OpenStack APIs: all of them (the state directory's gateway), or, as one pod of the
    self-hosted control plane, the `services` named, on `host`:`port`, reaching the others at
    `internal_url`, with the files of a mounted Secret instead of the state directory's."""
    supervisor.bind_to_supervisor()
    files = (
        Path(kubeconfig or supervised_kubeconfig(state, "openstack")),
        Path(key_repository or state.fernet_keys),
        Path(admin_password_file or state.admin_password),
    )
    if _missing(list(files), console):
        return 1
    from unistack.cli import hostoptions, hosts
    from unistack.images import vmimage
    from unistack.openstack import gateway
    from unistack.runtime import process

    process.configure_logging()
    options = hostoptions.load(state)
    try:
        settings = gateway.GatewaySettings(
            kubeconfig=str(files[0]),
            key_repository=str(files[1]),
            admin_password_file=str(files[2]),
            public_url=options.openstack_url,
            port=options.openstack_port,
            workers=options.openstack_workers,
            image_store=str(state.images),
            public_cidr=options.public_cidr,
            vm_image_dir=str(vmimage.machine_dir()),
            services=services,
            internal_url=internal_url,
            drain_seconds=drain_seconds,
        )
    except ValueError as error:
        console.print(f"[red]{error}[/]", highlight=False)
        return 2
    if options.hosts > 1:  # the other hosts' agents upload images here over the underlay
        underlay = hosts.underlay_gateway(options)
        settings = dataclasses.replace(
            settings, host="0.0.0.0", agent_url=f"http://{underlay}:{options.openstack_port}"
        )
    settings = dataclasses.replace(
        settings,
        host=host if host is not None else settings.host,
        port=port if port is not None else settings.port,
    )
    gateway.serve(settings)
    return 0


DNS_DRAIN_SECONDS = 2.0


def serve_dns(state: StateDir, console: Console, *, in_pod: bool = False) -> int:
    """Cluster DNS on the host's DNS port, publishing itself; or, `in_pod`, as a replica of
    the control plane's `dns` Deployment: on port 53 of its own address, answering on for a
    moment after SIGTERM while the operator takes it out of kube-dns and the proxies follow."""
    supervisor.bind_to_supervisor()
    config = state.kubeconfig if in_pod else supervised_kubeconfig(state, "dns")
    if _missing([config], console):
        return 1
    from unistack.cli import hostoptions
    from unistack.kube import dns

    options = hostoptions.load(state)
    settings = dns.DnsSettings(
        host="0.0.0.0",
        port=options.dns_port,
        advertise_address=options.gateway,
        service_ip=options.cluster_dns,
    )
    if in_pod:  # the operator publishes the Ready replicas: none publishes itself
        settings = dataclasses.replace(
            settings, port=53, advertise_address=None, drain_seconds=DNS_DRAIN_SECONDS
        )
    dns.serve(str(config), settings)
    return 0


def serve_gateway(
    state: StateDir, console: Console, *, in_pod: bool = False, port: int = 0,
    bootstrap: bool = False,
) -> int:  # fmt: skip
    """The HAProxy gateway on the OpenStack port, routing to the control-plane pods: as a
    replica of the `gateway` Deployment (`in_pod`, saying it is Ready in a file its probe
    reads), or, `bootstrap`, the supervisor's, serving only while no such replica is Ready."""
    supervisor.bind_to_supervisor()
    access = state.kubeconfig if in_pod else supervised_kubeconfig(state, "gateway")
    if _missing([access], console):
        return 1
    from unistack.cli import hostoptions, selfhost
    from unistack.controlplane import gateway, haproxyconf, render

    options = hostoptions.load(state)
    config = haproxyconf.GatewayConfig(
        bind_host="0.0.0.0", bind_port=port or options.openstack_port
    )
    settings = gateway.GatewaySettings(workdir=state.root / "gateway", config=config)
    if in_pod:
        beat = Path(render.GATEWAY_HEARTBEAT)
        settings = dataclasses.replace(
            settings, heartbeat=beat, drain_seconds=render.GATEWAY_DRAIN_SECONDS
        )
    if bootstrap:
        selfhost.serve_gateway_bootstrap(str(access), settings)
    else:
        gateway.serve(str(access), settings)
    return 0
