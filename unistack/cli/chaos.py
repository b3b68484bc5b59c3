"""`unistack chaos`: kill parts of the control plane under load and report what clients saw.

    unistack chaos [--state-dir DIR] [--target pods|agent|apiserver] [-l SELECTOR]
                   [-n NAMESPACE] [--interval S] [--duration S] [--workers N] [--no-load]
                   [--force] [--report FILE]

The kill loop, the pod target, the load and the report are `unistack.verify`'s (`chaos`,
`load`); this module adds the targets that are processes of the supervisor (SIGKILL, as a
crash: the supervisor starts them again) and builds everything from the state directory:
the gateway and admin credentials for the OpenStack calls, the kubeconfig for the Kubernetes
ones. The report goes to the terminal and, as JSON, to `--report` (default
`DIR/chaos/report-<time>.json`). Exit code 0 when every kill recovered and no request failed.

- `pods` (default): a random Ready pod matching the selector (default: the whole control
  plane, `app.kubernetes.io/part-of=unistack` in `unistack-system`); recovered when as many
  are Ready again.
- `agent`: this host's node agent; recovered when a new agent has renewed the node's Lease.
- `apiserver`: the API server; recovered when `/readyz` answers 200.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import time
from pathlib import Path

from rich.console import Console

from unistack.cli import apicall, hostoptions, kubeconfig, launch, processes, serve
from unistack.cli.statedir import StateDir, default_state_dir
from unistack.verify import chaos
from unistack.verify import load as loadgen

TARGETS = ("pods", "agent", "apiserver")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chaos", help="kill control-plane parts at an interval under load; report the impact"
    )
    parser.set_defaults(handler=run)
    add_options(parser)


def add_options(parser: argparse.ArgumentParser, duration: float = 120.0) -> None:
    parser.add_argument(
        "--state-dir", default=default_state_dir(), metavar="DIR", help="state directory"
    )
    parser.add_argument("--target", choices=TARGETS, default="pods", help="what to kill")
    parser.add_argument(
        "-l",
        "--selector",
        default=chaos.CONTROL_PLANE_SELECTOR,
        help=f"pods to pick from (default: {chaos.CONTROL_PLANE_SELECTOR})",
    )
    parser.add_argument(
        "-n", "--namespace", default=chaos.CONTROL_PLANE_NAMESPACE, help="the pods' namespace"
    )
    parser.add_argument(
        "--interval", type=float, default=30.0, metavar="S", help="seconds between kills"
    )
    parser.add_argument(
        "--duration", type=float, default=duration, metavar="S", help="how long to go on"
    )
    parser.add_argument("--workers", type=int, default=4, metavar="N", help="load threads")
    parser.add_argument("--no-load", action="store_true", help="kill only, send no load")
    parser.add_argument("--force", action="store_true", help="delete pods with no grace period")
    parser.add_argument(
        "--recovery-timeout", type=float, default=120.0, metavar="S", help="per kill"
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="where the JSON goes")


# --- targets that are the supervisor's processes ------------------------------------------


class ProcessTarget:
    """A child of the supervisor, found by its command line, killed with SIGKILL."""

    def __init__(self, state: StateDir, role: str) -> None:
        self.state = state
        self.role = role  # "agent" or "apiserver": `unistack serve ROLE`
        self.description = f"the {role} process, SIGKILL"
        self.killed: dict[str, processes.ProcessId] = {}
        self.killed_at: dict[str, float] = {}

    def find(self) -> processes.ProcessId | None:
        supervisor = launch.running_supervisor(self.state)
        if supervisor is None:
            raise chaos.ChaosError(f"no supervisor is running from {self.state.root}")
        for child in processes.children_of(supervisor.pid):
            argv = processes.command_line(child.pid) or []
            if is_role(argv, self.role):
                return child
        return None

    def kill(self) -> str:
        process = self.find()
        if process is None:
            raise chaos.ChaosError(f"no {self.role} process is running")
        victim = f"{self.role} (pid {process.pid})"
        self.killed[victim] = process
        self.killed_at[victim] = time.time()
        processes.send(process, signal.SIGKILL)
        return victim

    def restarted(self, victim: str) -> bool:
        current = self.find()
        return current is not None and current != self.killed[victim]


def is_role(argv: list[str], role: str) -> bool:
    """`unistack serve ROLE` for this host (an extra host's agent has `--host N`)."""
    if "serve" not in argv or "--host" in argv:
        return False
    index = argv.index("serve")
    return len(argv) > index + 1 and argv[index + 1] == role


class ApiServerTarget(ProcessTarget):
    def __init__(self, state: StateDir, access: kubeconfig.ApiAccess) -> None:
        super().__init__(state, "apiserver")
        self.access = access

    def recovered(self, victim: str) -> bool:
        try:
            return apicall.request(self.access, "GET", "/readyz", timeout=2).status == 200
        except apicall.ApiUnreachable:
            return False


class AgentTarget(ProcessTarget):
    def __init__(self, state: StateDir, access: kubeconfig.ApiAccess, node: str) -> None:
        super().__init__(state, "agent")
        self.access = access
        self.node = node

    def recovered(self, victim: str) -> bool:
        """A new agent is running and has renewed the node's Lease since the kill."""
        if not self.restarted(victim):
            return False
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        try:
            reply = apicall.request(self.access, "GET", path, timeout=2)
        except apicall.ApiUnreachable:
            return False
        if reply.status != 200:
            return False
        renewed = json.loads(reply.body).get("spec", {}).get("renewTime")
        return bool(renewed) and parse_time(renewed) > self.killed_at[victim]


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- building it from the state directory ----------------------------------------------------


def cloud_of(state: StateDir, access: kubeconfig.ApiAccess) -> loadgen.Cloud:
    options = hostoptions.load(state)
    return loadgen.Cloud(
        openstack_url=options.openstack_url,
        username="admin",
        password=state.admin_password.read_text().strip(),
        project="admin",
        kube_server=access.server,
        kube_ca_pem=access.ca_pem,
        kube_token=access.token,
    )


def target_of(
    args: argparse.Namespace, state: StateDir, access: kubeconfig.ApiAccess
) -> chaos.Target:
    if args.target == "agent":
        return AgentTarget(state, access, serve.agent_settings(state).node_name)
    if args.target == "apiserver":
        return ApiServerTarget(state, access)
    return chaos.PodTarget(
        access.server,
        access.ca_pem,
        access.token,
        namespace=args.namespace,
        selector=args.selector,
        force=args.force,
    )


def report_path(args: argparse.Namespace, state: StateDir, kind: str = "chaos") -> Path:
    """`--report`, else `DIR/<kind>/report-<time>.json`."""
    if args.report:
        return Path(args.report)
    return state.root / kind / f"report-{time.strftime('%Y%m%dT%H%M%S')}.json"


def write_json(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def chaos_under_load(args: argparse.Namespace, state: StateDir, console: Console) -> chaos.Report:
    access = kubeconfig.load_access(state.kubeconfig)
    target = target_of(args, state, access)

    def announce(kill: chaos.Kill) -> None:
        after = (
            f"recovered in {kill.recovery:.1f} s" if kill.recovery is not None else "NOT recovered"
        )
        console.print(f"killed {kill.victim}: {after}", highlight=False)

    console.print(
        f"chaos: {target.description}, every {args.interval:g} s for {args.duration:g} s"
        + ("" if args.no_load else f", {args.workers} load workers"),
        highlight=False,
    )
    if args.no_load:
        return chaos.run(
            target, args.interval, args.duration, None, args.recovery_timeout, announce
        )
    with loadgen.Load(cloud_of(state, access), workers=args.workers) as load:
        return chaos.run(
            target, args.interval, args.duration, load, args.recovery_timeout, announce
        )


def run(args: argparse.Namespace, console: Console) -> int:
    state = StateDir.at(args.state_dir)
    if not state.kubeconfig.exists():
        console.print(f"[red]no cloud in {state.root} (run unistack up)[/]", highlight=False)
        return 1
    report = chaos_under_load(args, state, console)
    chaos.print_report(report, console)
    path = report_path(args, state)
    write_json(path, chaos.report_json(report))
    console.print(f"report: {path}", highlight=False)
    return 0 if report.ok and report.kills else 1
