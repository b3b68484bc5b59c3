"""What `unistack up` launches, and how to recognise it later.

The supervisor always runs as `python -m unistack.cli.main supervise --state-dir DIR ...`, so
`down` and `up` can check from /proc/<pid>/cmdline that the pid in `DIR/supervisor.pid` is
really the supervisor of that state directory. `control_plane_children` lists what the
supervisor starts.
"""

from __future__ import annotations

import sys

from unistack.cli import hostoptions, hosts, processes, supervisor
from unistack.cli.statedir import StateDir

MODULE = "unistack.cli.main"


def self_command() -> list[str]:
    """The argv prefix that runs this CLI with the current interpreter."""
    return [sys.executable, "-m", MODULE]


def supervisor_argv(state: StateDir, port: int) -> list[str]:
    return [*self_command(), "supervise", "--state-dir", str(state.root), "--port", str(port)]


def control_plane_children(state: StateDir, port: int) -> list[supervisor.ChildSpec]:
    """The processes that must exist before anything else: the API server, the controllers
    (self-hosted, the bootstrap of their pods), this host's image registry and node agent, and
    the OpenStack gateway (the APIs themselves, or the bootstrap of the gateway's pods); and,
    unless it runs as pods, the DNS server."""
    root = str(state.root)
    # Self-hosted, the OpenStack APIs and cluster DNS are pods (`cli.selfhost`), the APIs
    # behind the HAProxy gateway.
    self_hosted = hostoptions.load(state).self_hosted
    names = (
        ("registry", "agent", "gateway")
        if self_hosted
        else ("registry", "dns", "agent", "openstack")
    )
    # the gateway's and the registry's pods take over from the supervisor's (`cli.selfhost`)
    flags = {"gateway": ("--bootstrap",), "registry": ("--bootstrap",)} if self_hosted else {}
    host = [
        supervisor.ChildSpec(
            name, (*self_command(), "serve", name, "--state-dir", root, *flags.get(name, ()))
        )
        for name in names
    ]
    for extra in extra_hosts(state):
        in_host = hosts.enter(extra)
        serve = ("serve", "agent", "--state-dir", root, "--host", str(extra.index))
        host.append(
            supervisor.ChildSpec(f"agent-{extra.index}", (*in_host, *self_command(), *serve))
        )
    return [
        supervisor.ChildSpec(
            "apiserver",
            (*self_command(), "serve", "apiserver", "--state-dir", root, "--port", str(port)),
        ),
        supervisor.ChildSpec(
            "controllers",
            (*self_command(), "serve", "controllers", "--state-dir", root, "--bootstrap"),
        ),
        *host,
    ]


def extra_hosts(state: StateDir) -> list[hosts.ExtraHost]:
    """The namespaces of `up --hosts N`, each running an agent of its own (`cli.hosts`)."""
    options = hostoptions.load(state)
    if options.hosts == 1:
        return []
    from unistack.agent import node

    return hosts.extra_hosts(options, options.node_name or node.default_node_name())


def is_supervisor_of(argv: list[str], state: StateDir) -> bool:
    """True if `argv` is the command line of the supervisor for `state`."""
    if MODULE not in argv or "supervise" not in argv or "--state-dir" not in argv:
        return False
    index = argv.index("--state-dir") + 1
    return index < len(argv) and argv[index] == str(state.root)


def running_supervisor(state: StateDir) -> processes.ProcessId | None:
    """The live supervisor named by `DIR/supervisor.pid`, or None."""
    pid = supervisor.read_pid(state.supervisor_pid)
    if pid is None:
        return None
    argv = processes.command_line(pid)
    process = processes.identify(pid)
    if argv is None or process is None or not is_supervisor_of(argv, state):
        return None
    return process
