"""Entry point of the `unistack` command: parse arguments, dispatch to one module per command.

    unistack up [--state-dir DIR] [--detach] [--port N] [--driver auto|linux|fake]
    unistack down [--state-dir DIR]
    unistack status [--state-dir DIR]
    unistack compact [--state-dir DIR] [--revision N]
    unistack keys rotate [--state-dir DIR] [--max-active N]
    unistack upgrade plan|apply --to RELEASE [--state-dir DIR]
    unistack serve apiserver|controllers|agent|registry|dns|openstack|gateway [--state-dir DIR]
    unistack verify tempest [--state-dir DIR] [--regex R] [--concurrency N] [--chaos-interval S]
    unistack verify [--state-dir DIR]          (Tempest, then load with chaos: one report)
    unistack chaos [--state-dir DIR] [--target pods|agent|apiserver] [--interval S] [--duration S]
    unistack manifests [--release R] [--size S] [--namespace NS] [--registry H:P] [--output F]
    unistack supervise --state-dir DIR        (internal: what `up` runs)

The state directory defaults to `$UNISTACK_STATE_DIR`, else `./state`.

Each command's module is imported when the command runs. `unistack serve ...` (what the
supervisor and every control-plane pod run) builds only the `serve` parser, so such a process
does not load the code of `verify`, `chaos`, `manifests` or `up` (a quarter of a second of a
replacement pod's start).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from unistack.cli import hostoptions, keys, kubeconfig, launch, serve, supervisor
from unistack.cli.statedir import StateDir, default_state_dir

DEFAULT_PORT = 6443
DRIVERS = ("auto", "linux", "fake")

Command = Callable[[argparse.Namespace, Console], int]


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def _public_cidr(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text} is not an IP network") from error
    if network.version != 4 or network.prefixlen > 29:
        raise argparse.ArgumentTypeError(f"{text}: an IPv4 subnet of /29 or larger is needed")
    return str(network)


def _release(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a release (an image tag)")
    return text


def _host_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 16:
        raise argparse.ArgumentTypeError("--hosts must be between 1 and 16")
    return count


def _state(args: argparse.Namespace) -> StateDir:
    return StateDir.at(args.state_dir)


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    host = hostoptions.HostOptions(
        driver=args.driver,
        node_name=args.node_name or "",
        bridge=args.bridge,
        pod_cidr=args.pod_cidr,
        registry_port=args.registry_port,
        agent_port=args.agent_port,
        dns_port=args.dns_port,
        openstack_port=args.openstack_port,
        openstack_workers=args.openstack_workers,
        instances=args.instances,
        public_cidr=args.public_cidr,
        hosts=args.hosts,
        hosts_cidr=args.hosts_cidr,
        vxlan_port=args.vxlan_port,
        nbd_port=args.nbd_port,
        control_plane=args.control_plane,
    )
    from unistack.cli import up

    return up.up(_state(args), args.port, args.driver, args.detach, console, host)


def cmd_down(args: argparse.Namespace, console: Console) -> int:
    from unistack.cli import down

    return down.down(_state(args), console)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from unistack.cli import status

    return status.status(_state(args), console)


def cmd_keys_rotate(args: argparse.Namespace, console: Console) -> int:
    return keys.rotate(_state(args), args.max_active, console)


def cmd_compact(args: argparse.Namespace, console: Console) -> int:
    from unistack.cli import compact

    return compact.compact(_state(args), args.revision, console)


def cmd_upgrade(args: argparse.Namespace, console: Console) -> int:
    from unistack.cli import upgrade

    if args.action == "plan":
        return upgrade.plan(_state(args), args.to, console)
    return upgrade.apply(_state(args), args.to, console)


def cmd_serve_apiserver(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    return serve.serve_apiserver(_state(args), args.port, console)


def cmd_serve_controllers(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    return serve.serve_controllers(
        _state(args), console, bootstrap=args.bootstrap, volumes_dir=args.volumes_dir
    )


def cmd_serve_agent(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    if args.cleanup:
        return serve.clean_agent(_state(args), console, args.host)
    return serve.serve_agent(_state(args), console, args.host)


def cmd_serve_registry(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    return serve.serve_registry(_state(args), console, in_pod=args.in_pod, bootstrap=args.bootstrap)


def cmd_serve_openstack(args: argparse.Namespace, console: Console) -> int:
    return serve.serve_openstack(
        _state(args),
        console,
        services=tuple(name.strip() for name in args.services.split(",") if name.strip()),
        host=args.host,
        port=args.port,
        internal_url=args.internal_url,
        kubeconfig=args.kubeconfig,
        key_repository=args.key_repository,
        admin_password_file=args.admin_password_file,
        drain_seconds=args.drain_seconds,
    )


def cmd_serve_gateway(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    return serve.serve_gateway(
        _state(args), console, in_pod=args.in_pod, port=args.port, bootstrap=args.bootstrap
    )


def cmd_serve_dns(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    return serve.serve_dns(_state(args), console, in_pod=args.in_pod)


def cmd_supervise(args: argparse.Namespace, console: Console) -> int:
    _configure_logging()
    state = _state(args)
    running = launch.running_supervisor(state)
    if running is not None and running.pid != os.getpid():
        console.print(f"a supervisor (pid {running.pid}) already runs from {state.root}")
        return 1
    children = launch.control_plane_children(state, args.port)
    return supervisor.Supervisor(children, state.logs, state.supervisor_pid).run()


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=default_state_dir(),
        metavar="DIR",
        help="state directory (default: $UNISTACK_STATE_DIR or ./state)",
    )


def _add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="Kubernetes API port (default 6443)"
    )


def _add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Command,
    help_text: str | None,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    _add_state_dir(parser)
    return parser


def build_parser(only_serve: bool = False) -> argparse.ArgumentParser:
    """Every command's parser; or, `only_serve`, the `serve` command's alone."""
    parser = argparse.ArgumentParser(
        prog="unistack", description="A converged private cloud on one machine."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only_serve:
        _add_serve(commands)
        return parser
    up_parser = _add_command(commands, "up", cmd_up, "start unistack (foreground unless -d)")
    up_parser.add_argument(
        "-d", "--detach", action="store_true", help="run in the background and return"
    )
    _add_port(up_parser)
    up_parser.add_argument(
        "--driver", choices=DRIVERS, default="auto", help="data-plane drivers (default auto)"
    )
    defaults = hostoptions.HostOptions()
    up_parser.add_argument("--node-name", help="this host's Node name (default: the hostname)")
    up_parser.add_argument("--bridge", default=defaults.bridge, help="the pod bridge's name")
    up_parser.add_argument("--pod-cidr", default=defaults.pod_cidr, help="this host's pod CIDR")
    up_parser.add_argument("--registry-port", type=_port, default=defaults.registry_port)
    up_parser.add_argument("--agent-port", type=_port, default=defaults.agent_port)
    up_parser.add_argument("--dns-port", type=_port, default=defaults.dns_port)
    up_parser.add_argument(
        "--openstack-port",
        type=_port,
        default=defaults.openstack_port,
        help="the OpenStack gateway's port (default 8080)",
    )
    up_parser.add_argument(
        "--openstack-workers",
        type=int,
        default=defaults.openstack_workers,
        help="the OpenStack gateway's worker processes (default 1)",
    )
    up_parser.add_argument(
        "--instances",
        choices=("auto", "fake"),
        default=defaults.instances,
        help="servers' instances: real (containers, VMs) when the host can, or state only",
    )
    up_parser.add_argument(
        "--public-cidr",
        type=_public_cidr,
        default=defaults.public_cidr,
        help="the public (external) network's IPv4 subnet; the host takes its first address"
        " (default 172.24.4.0/24; give each cloud on one machine its own)",
    )
    up_parser.add_argument(
        "--hosts",
        type=_host_count,
        default=defaults.hosts,
        help="hosts on this machine: the extra ones are network namespaces with their own agent",
    )
    up_parser.add_argument(
        "--hosts-cidr",
        type=_public_cidr,
        default=defaults.hosts_cidr,
        help="the underlay network joining the hosts (default 10.254.0.0/24)",
    )
    up_parser.add_argument(
        "--vxlan-port",
        type=_port,
        default=defaults.vxlan_port,
        help="the UDP port tenant networks tunnel on between hosts (default 4789)",
    )
    up_parser.add_argument(
        "--nbd-port",
        type=_port,
        default=defaults.nbd_port,
        help="the TCP port each host serves its volumes to other hosts' servers on, over NBD "
        "with TLS (default 10809)",
    )
    up_parser.add_argument(
        "--control-plane",
        choices=("auto", "pods", "processes"),
        default=defaults.control_plane,
        help="run the OpenStack APIs as pods of a ControlPlane, or as one supervised process"
        " (default auto: pods where the agent runs real containers)",
    )
    _add_command(commands, "down", cmd_down, "stop everything `up` started")
    _add_command(commands, "status", cmd_status, "show health; exit 1 if unhealthy")
    keys_parser = commands.add_parser("keys", help="the identity service's token keys")
    keys_commands = keys_parser.add_subparsers(dest="keys_command", required=True, metavar="CMD")
    rotate_parser = _add_command(
        keys_commands, "rotate", cmd_keys_rotate, "rotate the Fernet keys (fernet_rotate)"
    )
    rotate_parser.add_argument(
        "--max-active",
        type=int,
        default=keys.DEFAULT_MAX_ACTIVE,
        help="keys kept, the staged and the primary included (default 3)",
    )
    compact_parser = _add_command(commands, "compact", cmd_compact, "compact store history")
    compact_parser.add_argument(
        "--revision", type=int, help="compact up to this revision (default: the current one)"
    )
    upgrade_parser = _add_command(
        commands, "upgrade", cmd_upgrade, "upgrade the self-hosted control plane"
    )
    upgrade_parser.add_argument("action", choices=("plan", "apply"))
    upgrade_parser.add_argument("--to", required=True, metavar="RELEASE", type=_release)
    _add_serve(commands)
    from unistack.cli import chaos, manifests, verify

    verify.add_parser(commands)
    manifests.add_parser(commands)
    chaos.add_parser(commands)
    _add_port(_add_command(commands, "supervise", cmd_supervise, "(internal) what `up` runs"))
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_parser = commands.add_parser(
        "serve", help="run one control-plane service in the foreground"
    )
    services = serve_parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    _add_port(_add_command(services, "apiserver", cmd_serve_apiserver, "the Kubernetes API"))
    controllers_parser = _add_command(
        services, "controllers", cmd_serve_controllers, "the Kubernetes controllers"
    )
    controllers_parser.add_argument(
        "--bootstrap",
        action="store_true",
        help="(internal) the supervisor's: stand in for the controllers' pods until ready",
    )
    controllers_parser.add_argument(
        "--volumes-dir", default="", help="where local-path volumes go (default DIR/volumes)"
    )
    agent_parser = _add_command(
        services, "agent", cmd_serve_agent, "this host's node agent (pods, Services, servers)"
    )
    agent_parser.add_argument(
        "--host", type=int, default=1, help="which host of `up --hosts N` (default 1: this one)"
    )
    agent_parser.add_argument(
        "--cleanup", action="store_true", help="(internal) remove what the agent made, and exit"
    )
    _add_pod_modes(
        _add_command(services, "registry", cmd_serve_registry, "the OCI image registry"),
        "registry",
    )
    dns_parser = _add_command(services, "dns", cmd_serve_dns, "the cluster DNS server")
    dns_parser.add_argument(
        "--in-pod", action="store_true", help="(internal) as a pod of the control plane"
    )
    gateway_parser = _add_command(
        services, "gateway", cmd_serve_gateway, "the HAProxy gateway to the API pods"
    )
    _add_pod_modes(gateway_parser, "gateway")
    gateway_parser.add_argument(
        "--port", type=int, default=0, help="the port to serve (default: the OpenStack port)"
    )
    _add_openstack_options(
        _add_command(services, "openstack", cmd_serve_openstack, "the OpenStack API gateway")
    )


def _add_pod_modes(parser: argparse.ArgumentParser, service: str) -> None:
    """`--in-pod` and `--bootstrap`, for a service whose pods share a port of the node with
    the supervisor's copy (`cli.selfhost.stand_in_for`)."""
    parser.add_argument(
        "--in-pod", action="store_true", help="(internal) as a pod of the control plane"
    )
    parser.add_argument(
        "--bootstrap",
        action="store_true",
        help=f"(internal) the supervisor's: stand in for the {service}'s pods until one is ready",
    )


def _add_openstack_options(parser: argparse.ArgumentParser) -> None:
    """One API per process (a control-plane pod): which, where, and its mounted files."""
    parser.add_argument(
        "--services",
        default="",
        help="comma-separated: identity,image,compute,network,volume (default: all)",
    )
    parser.add_argument("--host", help="the address to listen on (default: the state dir's)")
    parser.add_argument("--port", type=int, help="the port (default: the state dir's)")
    parser.add_argument(
        "--internal-url",
        default="",
        help="the gateway the other services are reached through (default: the public URL)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="after SIGTERM, keep serving S seconds with /healthz failing (a pod; default 0)",
    )
    for option in ("--kubeconfig", "--key-repository", "--admin-password-file"):
        parser.add_argument(option, help="instead of the state directory's")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only_serve=argv[:1] == ["serve"]).parse_args(argv)
    # stdout carries only results (the endpoint lines of `up`, tables); messages go to stderr.
    console = Console(stderr=args.command in ("up", "serve", "supervise"))
    try:
        return int(args.handler(args, console))
    except kubeconfig.KubeconfigError as error:
        console.print(f"[red]{error}[/]", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
