"""`unistack status`: is the control plane of a state directory healthy?

Checks the supervisor (pid file and /proc), then calls the API server with the kubeconfig's
CA and token: `/readyz` must answer 200 and `/version` must name a version. When the
control plane is self-hosted, a row per API service follows, from the ControlPlane's status.
Prints a `rich` table; the exit code is 1 unless the API server is ready.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from unistack.cli import apicall, kubeconfig, launch
from unistack.cli.statedir import StateDir
from unistack.controlplane import kind, presets


@dataclass(frozen=True)
class Check:
    """One row of the status table. `required` checks decide the exit code."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def check_supervisor(state: StateDir) -> Check:
    process = launch.running_supervisor(state)
    if process is None:
        return Check("supervisor", False, f"not running from {state.root}", required=False)
    return Check("supervisor", True, f"pid {process.pid}", required=False)


def check_readyz(access: kubeconfig.ApiAccess) -> Check:
    try:
        reply = apicall.request(access, "GET", "/readyz")
    except apicall.ApiUnreachable as error:
        return Check("API server /readyz", False, str(error))
    detail = f"{access.server}: {reply.status} {reply.text[:200]}"
    return Check("API server /readyz", reply.status == 200, detail)


def check_version(access: kubeconfig.ApiAccess) -> Check:
    try:
        reply = apicall.request(access, "GET", "/version")
        version = json.loads(reply.body).get("gitVersion") if reply.status == 200 else None
    except apicall.ApiUnreachable as error:
        return Check("API server /version", False, str(error))
    except (ValueError, AttributeError):
        version = None
    if not version:
        return Check("API server /version", False, f"{reply.status} {reply.text[:200]}")
    return Check("API server /version", True, str(version))


def check_control_plane(access: kubeconfig.ApiAccess) -> list[Check]:
    """A row per service of the self-hosted control plane, from the ControlPlane's status
    (none when the APIs run as a process)."""
    path = f"/apis/{kind.GROUP}/{kind.VERSION}/namespaces/{kind.NAMESPACE}/{kind.PLURAL}"
    try:
        reply = apicall.request(access, "GET", f"{path}/{kind.NAME}")
    except apicall.ApiUnreachable:
        return []
    if reply.status != 200:
        return []
    status = json.loads(reply.body).get("status") or {}
    rows = [Check("control plane", status.get("phase") == "Ready", _summary(status), False)]
    deployments = {service.name: service.deployment for service in presets.SERVICES}
    for name, service in sorted((status.get("services") or {}).items()):
        detail = f"{service['ready']}/{service['desired']} ready, release {service['release']}"
        shown = deployments.get(name, name)
        rows.append(Check(f"  {shown}", bool(service.get("healthy")), detail, False))
    return rows


def _summary(status: dict) -> str:
    return f"{status.get('phase', 'Pending')}, {status.get('ready', '0/0')} services ready"


def collect(state: StateDir) -> list[Check]:
    checks = [check_supervisor(state)]
    try:
        access = kubeconfig.load_access(state.kubeconfig)
    except kubeconfig.KubeconfigError as error:
        return [*checks, Check("kubeconfig", False, f"{error}; run `unistack up`")]
    return [*checks, check_readyz(access), check_version(access), *check_control_plane(access)]


def render(checks: list[Check]) -> Table:
    table = Table(title="unistack status")
    table.add_column("component")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    for check in checks:
        colour = "green" if check.ok else ("red" if check.required else "yellow")
        state = "ok" if check.ok else ("failing" if check.required else "down")
        table.add_row(check.name, f"[{colour}]{state}[/]", check.detail)
    return table


def status(state: StateDir, console: Console) -> int:
    checks = collect(state)
    console.print(render(checks))
    return 0 if all(check.ok for check in checks if check.required) else 1
