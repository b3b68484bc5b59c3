"""`unistack upgrade plan|apply --to RELEASE`: upgrade the self-hosted control plane.

`plan` prints the steps (`controlplane.upgrade.plan`: identity, image, network, volume,
compute), each with its impact and an estimate from the live cluster, and the total.
`apply` makes sure the release's image is in the registry (a release of the same code is a
new tag of the same layers, `images.controlplane.ensure_version`, so the path is testable),
annotates the estimate on the ControlPlane, sets `spec.release`, and follows the operator's
rollout through the ControlPlane's status, printing each step as it finishes. A step not
healthy within `STALL_FACTOR` times its estimate (at least `MIN_STALL` seconds) rolls the
release back, waits for the old one to settle, and exits 1. At the end it prints the actual
duration next to the estimate.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from rich.console import Console
from rich.table import Table

from unistack.cli.statedir import StateDir
from unistack.client import kubeconfig
from unistack.client.api import Client
from unistack.client.resources import DEPLOYMENTS, NODES, PODS
from unistack.controlplane import kind, operator, presets, upgrade

STALL_FACTOR = 3.0
MIN_STALL = 60.0
POLL = 0.25


def _client(state: StateDir) -> Client:
    return Client(kubeconfig.load_transport(str(state.kubeconfig)))


async def _steps(client: Client, controlplane: dict) -> list[upgrade.Step]:
    deployments = await client.list(DEPLOYMENTS, kind.NAMESPACE)
    pods = await client.list(PODS, kind.NAMESPACE)
    nodes = await client.list(NODES)
    by_name = {d["metadata"]["name"]: d for d in deployments["items"]}
    history = (controlplane.get("status") or {}).get("upgrade")
    return upgrade.plan(by_name, pods["items"], history, upgrade.cores_of(nodes["items"]))


def table(steps: list[upgrade.Step], current: str, target: str) -> Table:
    view = Table(title=f"upgrade {current} → {target}")
    for column in ("step", "service", "replicas", "per replica", "estimate", "impact"):
        view.add_column(column)
    for number, step in enumerate(steps, 1):
        ready = f"{step.ready_seconds:.1f} s" + ("" if step.measured else " (default)")
        # "per replica": one replica replaced, from the last upgrade or the pods' starts
        view.add_row(str(number), step.deployment, str(step.replicas), ready,
                     f"{step.estimate:.1f} s", step.impact)  # fmt: skip
    view.add_row("", "instances", "", "", "", "none (agents not upgraded)")
    view.add_row("", "[b]total[/]", "", "", f"[b]{upgrade.total(steps):.1f} s[/]", "")
    return view


async def _plan(state: StateDir, target: str, console: Console) -> int:
    client = _client(state)
    try:
        controlplane = await client.get(kind.REF, kind.NAME, kind.NAMESPACE)
        steps = await _steps(client, controlplane)
    finally:
        await client.close()
    console.print(table(steps, controlplane["spec"]["release"], target))
    return 0


def plan(state: StateDir, target: str, console: Console) -> int:
    return asyncio.run(_plan(state, target, console))


def apply(state: StateDir, target: str, console: Console) -> int:
    from unistack.images import build
    from unistack.images import controlplane as images
    from unistack.images.store import ImageStore

    # through the machine's build cache, as `up` made the running release: the state dir's
    # copy is linked from there, and building it afresh would re-push the running
    # release's tag under a new digest (every service rolled twice)
    cache = build.machine_cache_if_writable()
    images.ensure_version(ImageStore(state.images), target, cache=cache)
    return asyncio.run(_apply(state, target, console))


async def _set_release(client: Client, release: str, estimate: float) -> None:
    note = orjson.dumps({"to": release, "seconds": round(estimate, 1)}).decode()
    patch = {
        "metadata": {"annotations": {operator.ESTIMATE_ANNOTATION: note}},
        "spec": {"release": release},
    }
    await client.patch(kind.REF, kind.NAME, patch, namespace=kind.NAMESPACE)


async def _apply(state: StateDir, target: str, console: Console) -> int:
    client = _client(state)
    try:
        controlplane = await client.get(kind.REF, kind.NAME, kind.NAMESPACE)
        current = controlplane["spec"]["release"]
        if current == target:
            console.print(f"the control plane already runs {target}")
            return 0
        steps = await _steps(client, controlplane)
        console.print(table(steps, current, target))
        estimate = upgrade.total(steps)
        started = time.monotonic()
        await _set_release(client, target, estimate)
        if not await _follow(client, steps, target, console):
            console.print(f"[red]the upgrade stalled; rolling back to {current}[/]")
            await _set_release(client, current, estimate)
            await _follow(client, steps, current, console)
            return 1
        actual = time.monotonic() - started
        error = (actual - estimate) / estimate * 100 if estimate else 0.0
        console.print(
            f"upgraded to {target} in {actual:.1f} s; estimated {estimate:.1f} s ({error:+.0f}%)"
        )
        return 0
    finally:
        await client.close()


async def _follow(client: Client, steps: list[upgrade.Step], target: str, console: Console) -> bool:
    """Until every service runs `target` healthily (True) or one stalls (False)."""
    limits = {s.service: max(s.estimate * STALL_FACTOR, MIN_STALL) for s in steps}
    done: set[str] = set()
    step_started = time.monotonic()
    while True:
        controlplane = await client.get(kind.REF, kind.NAME, kind.NAMESPACE)
        services = (controlplane.get("status") or {}).get("services") or {}
        for service in presets.SERVICES:
            line = services.get(service.name) or {}
            if service.name in done or not (line.get("release") == target and line["healthy"]):
                continue
            done.add(service.name)
            console.print(f"  {service.deployment} runs {target} "
                          f"({time.monotonic() - step_started:.1f} s)")  # fmt: skip
            step_started = time.monotonic()
        if len(done) == len(presets.SERVICES):
            return True
        waiting = next(s.name for s in presets.SERVICES if s.name not in done)
        if time.monotonic() - step_started > limits[waiting]:
            return False
        await asyncio.sleep(POLL)
