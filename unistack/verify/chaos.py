"""Chaos: kill a part of the control plane at an interval and time how it recovers.

After SKT's Cookiemonster: a `Target` picks a victim and kills it (`PodTarget`: a random
Ready pod matching a label selector, deleted through the API as `kubectl delete pod` does,
or at once with `force`; `unistack.cli.chaos` adds the agent and the API server, which are
processes of the supervisor), then says when the cluster has recovered from it. `run` kills
every `interval` seconds for `duration` seconds, waiting for each recovery (up to
`recovery_timeout`) before the next kill is due, while a `load.Load` runs if one is given.

`summarize` is pure: from the kills and the load's samples it works out, per kill, the
requests that failed between it and the next one and how long clients saw errors (the last
failure after the kill), and the totals; `report_json` and `print_report` show the result.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from unistack.kube import replicaset
from unistack.verify import load as loadgen

_ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
CONTROL_PLANE_SELECTOR = "app.kubernetes.io/part-of=unistack"
CONTROL_PLANE_NAMESPACE = "unistack-system"


class ChaosError(Exception):
    """Nothing could be killed (no victim matches), or the cluster could not be asked."""


class Target(Protocol):
    description: str

    def kill(self) -> str:
        """Kill one victim now; return its name."""
        ...

    def recovered(self, victim: str) -> bool:
        """True once the cluster is whole again after `victim` was killed."""
        ...


@dataclass
class Kill:
    victim: str
    at: float  # time.monotonic() of the kill
    wall: float  # time.time() of the kill
    recovery: float | None = None  # seconds until recovered; None: not within the timeout
    failed: int = 0  # load requests that failed from this kill to the next
    sent: int = 0
    disrupted: float = 0.0  # seconds from the kill to the last failed request it caused


@dataclass
class Report:
    target: str
    interval: float
    duration: float
    kills: list[Kill] = field(default_factory=list)
    stats: list[loadgen.ActionStats] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each kind of failure with its count
    sent: int = 0
    failed: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and all(k.recovery is not None for k in self.kills)


# --- a pod target, through the API -----------------------------------------------------------


class PodTarget:
    """A random Ready pod matching `selector` in `namespace`; recovered when as many pods are
    Ready again as before the kill, none of them the victim."""

    def __init__(
        self,
        server: str,
        ca_pem: bytes,
        token: str,
        namespace: str = CONTROL_PLANE_NAMESPACE,
        selector: str = CONTROL_PLANE_SELECTOR,
        force: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.selector = selector
        self.force = force
        self.rng = rng or random.Random()
        self.http = loadgen.Http(ca_pem, timeout=10)
        self.lock = threading.Lock()
        self.before: dict[str, int] = {}
        mode = "force-deleted" if force else "deleted"
        self.description = f"pods {selector or '(all)'} in {namespace}, {mode}"

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        with self.lock:
            try:
                status, payload, _ = self.http.call(method, self.server + path, headers, body)
            except (OSError, ssl.SSLError) as error:
                raise ChaosError(f"{method} {path}: {error}") from error
        return status, json.loads(payload) if payload else None

    def ready_pods(self) -> list[str]:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        if self.selector:
            path += f"?labelSelector={quote(self.selector)}"
        status, body = self._call("GET", path)
        if status != 200:
            raise ChaosError(f"listing pods: {status} {body}")
        return [pod["metadata"]["name"] for pod in body["items"] if is_ready(pod)]

    def kill(self) -> str:
        pods = self.ready_pods()
        if not pods:
            raise ChaosError(f"no Ready pod matches {self.selector!r} in {self.namespace}")
        victim = self.rng.choice(pods)
        self.before[victim] = len(pods)
        path = f"/api/v1/namespaces/{self.namespace}/pods/{victim}"
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if self.force:
            body["gracePeriodSeconds"] = 0  # type: ignore[assignment]
        status, answer = self._call("DELETE", path, body)
        if status not in (200, 202):
            raise ChaosError(f"deleting pod {victim}: {status} {answer}")
        return victim

    def recovered(self, victim: str) -> bool:
        try:
            pods = self.ready_pods()
        except ChaosError:
            return False
        return victim not in pods and len(pods) >= self.before.get(victim, 1)


def is_ready(pod: dict[str, Any]) -> bool:
    """Ready, and not going away."""
    return not pod["metadata"].get("deletionTimestamp") and replicaset.is_ready(pod)


# --- the kill loop ------------------------------------------------------------------------


def run(
    target: Target,
    interval: float,
    duration: float,
    load: loadgen.Load | None = None,
    recovery_timeout: float = 120.0,
    on_kill: Callable[[Kill], None] | None = None,
    stopping: threading.Event | None = None,
) -> Report:
    """Kill at `interval` for `duration` seconds (the first kill after a short warm-up so the
    load is running); wait for each recovery. `stopping` ends it early (Tempest finished)."""
    stopping = stopping or threading.Event()
    kills: list[Kill] = []
    started = time.monotonic()
    due = started + min(interval, 5.0)
    errors: list[str] = []
    while not stopping.is_set():
        if stopping.wait(max(0.0, due - time.monotonic())):
            break
        if time.monotonic() - started >= duration:
            break
        try:
            victim = target.kill()
        except ChaosError as error:
            errors.append(str(error))
            due = time.monotonic() + interval
            continue
        kill = Kill(victim, time.monotonic(), time.time())
        kills.append(kill)
        deadline = kill.at + recovery_timeout
        while time.monotonic() < deadline and not stopping.is_set():
            if target.recovered(victim):
                kill.recovery = time.monotonic() - kill.at
                break
            time.sleep(0.1)
        if on_kill:
            on_kill(kill)
        due = max(kill.at + interval, time.monotonic())
    ended = time.monotonic()
    samples = load.snapshot() if load else []
    report = summarize(target.description, interval, ended - started, kills, samples)
    report.errors = errors + report.errors
    return report


def summarize(
    target: str, interval: float, duration: float, kills: list[Kill], samples: list[loadgen.Sample]
) -> Report:
    """Attribute the load's samples to the kills: a sample belongs to the last kill at or
    before the moment it ended (those before the first kill to none)."""
    ordered = sorted(kills, key=lambda k: k.at)
    for kill in ordered:
        kill.sent = kill.failed = 0
        kill.disrupted = 0.0
    for sample in samples:
        owner = None
        for kill in ordered:
            if kill.at <= sample.started + sample.seconds:
                owner = kill
        if owner is None:
            continue
        owner.sent += 1
        if not sample.ok:
            owner.failed += 1
            owner.disrupted = max(owner.disrupted, sample.started + sample.seconds - owner.at)
    failures = [s for s in samples if not s.ok]
    kinds: dict[str, int] = {}
    for sample in failures:
        key = f"{sample.action}: {_ID.sub('{id}', sample.error)[:200]}"
        kinds[key] = kinds.get(key, 0) + 1
    return Report(
        target=target,
        interval=interval,
        duration=duration,
        kills=ordered,
        stats=loadgen.stats(samples),
        errors=[f"{count} x {key}" for key, count in sorted(kinds.items(), key=lambda i: -i[1])],
        sent=len(samples),
        failed=len(failures),
    )


def report_json(report: Report) -> dict[str, Any]:
    kills = []
    for kill in report.kills:
        entry = asdict(kill)
        entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(kill.wall))
        entry.pop("wall")
        kills.append(entry)
    recoveries = [k.recovery for k in report.kills if k.recovery is not None]
    return {
        "target": report.target,
        "interval": report.interval,
        "duration": round(report.duration, 1),
        "ok": report.ok,
        "requests": {"sent": report.sent, "failed": report.failed},
        "recovery": {
            "kills": len(report.kills),
            "recovered": len(recoveries),
            "max": max(recoveries) if recoveries else None,
        },
        "kills": kills,
        "actions": [asdict(row) for row in report.stats],
        "errors": report.errors,
    }


def print_report(report: Report, console: Console) -> None:
    kills = Table(title=f"chaos: {report.target}, every {report.interval:g} s")
    for column in ("#", "victim", "recovered in", "requests", "failed", "errors seen for"):
        kills.add_column(column, justify="left" if column == "victim" else "right")
    for number, kill in enumerate(report.kills, 1):
        recovery = f"{kill.recovery:.1f} s" if kill.recovery is not None else "[red]no[/]"
        seen = f"{kill.disrupted:.1f} s" if kill.failed else "-"
        failed = f"[red]{kill.failed}[/]" if kill.failed else "0"
        kills.add_row(str(number), kill.victim, recovery, str(kill.sent), failed, seen)
    console.print(kills)
    if report.stats:
        actions = Table(title="load (Rally-style atomic actions)")
        for column in ("action", "sent", "failed", "p50", "p95"):
            actions.add_column(column, justify="left" if column == "action" else "right")
        for row in report.stats:
            actions.add_row(
                row.action,
                str(row.sent),
                str(row.failed),
                f"{row.p50 * 1000:.0f} ms",
                f"{row.p95 * 1000:.0f} ms",
            )
        console.print(actions)
    for error in report.errors:
        console.print(f"  [red]{error}[/]", highlight=False)
    verdict = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
    console.print(
        f"{verdict}: {len(report.kills)} kills in {report.duration:.0f} s, "
        f"{report.failed} of {report.sent} requests failed"
    )
