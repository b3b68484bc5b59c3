"""The self-hosted control plane: start-up time, and pod kills under load.

    python -m bench.controlplane [--state-dir DIR] [--kills 3]

1. `unistack up --control-plane pods` on a fresh state directory: seconds until `up` returns
   (the gateway answers identity) and until the ControlPlane reports every API Ready
   (target 20 s; DevStack takes tens of minutes).
2. Size `small` (two replicas of every API). For each API, `--kills` times: `unistack
   chaos`'s Rally-style load (reads, network and ConfigMap create/delete) runs through the
   gateway while one pod of that API is deleted; count the requests sent and failed, and
   time until a replacement is Ready (targets: zero failed, replacement Ready within 3 s).
3. `--upgrades` times (default 2): `unistack upgrade apply` to a new release (a new tag of
   the same code) under the same load; requests sent and failed, and the actual duration
   the ControlPlane's `status.upgrade` records next to the estimate `apply` made (targets:
   zero failed, actual within 25% of the estimate). The first estimate comes from the
   pods' start times, each next one from the upgrade before.
4. `unistack down`.
Needs root, runc and haproxy, as the control-plane pods do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from unistack.cli import apicall
from unistack.cli.chaos import cloud_of
from unistack.cli.kubeconfig import ApiAccess, load_access
from unistack.cli.statedir import StateDir
from unistack.controlplane import kind
from unistack.verify import load as loadgen

NS = "unistack-system"
APIS = ("identity", "image", "network", "volume", "compute")
UP_TARGET = 20.0
READY_TARGET = 3.0
ESTIMATE_TOLERANCE = 0.25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cloud:
    state_dir: Path
    openstack_port: int = 0
    _access: ApiAccess | None = None

    def unistack(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "unistack.cli.main",
            *args,
            "--state-dir",
            str(self.state_dir),
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def kubectl(self, *args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.state_dir / "kubeconfig")}
        return subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=env, check=True, timeout=60
        ).stdout

    def access(self) -> ApiAccess:
        if self._access is None:
            self._access = load_access(self.state_dir / "kubeconfig")
        return self._access

    def get(self, path: str) -> dict[str, Any]:
        """One GET in this process: the waits poll every 50 ms, and a kubectl process each
        time would take most of a core from the cloud being measured."""
        reply = apicall.request(self.access(), "GET", path)
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: {reply.status} {reply.body[:200]!r}")
        return dict(json.loads(reply.body))

    def ready_pods(self, api: str) -> list[str]:
        selector = quote(f"app.kubernetes.io/name={api}-api")
        pods = self.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}")
        return [
            p["metadata"]["name"]
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]

    def phase(self) -> str:
        path = f"/apis/{kind.GROUP}/{kind.VERSION}/namespaces/{kind.NAMESPACE}/{kind.PLURAL}"
        cp = self.get(f"{path}/{kind.NAME}")
        return str(cp.get("status", {}).get("phase", ""))


def wait(check: object, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def start(cloud: Cloud) -> tuple[float, float]:
    cloud.openstack_port = _free_port()
    ports = {flag: str(_free_port()) for flag in ("--registry-port", "--agent-port", "--dns-port")}
    started = time.monotonic()
    up = cloud.unistack(
        "up", "--detach", "--control-plane", "pods", "--port", str(_free_port()),
        "--bridge", "unistackbcp", "--pod-cidr", "10.243.0.0/24", "--node-name", "bench-cp",
        "--public-cidr", "172.24.16.0/24", "--openstack-port", str(cloud.openstack_port),
        *[item for pair in ports.items() for item in pair],
    )  # fmt: skip
    answered = time.monotonic() - started
    if up.returncode != 0:
        raise SystemExit(f"unistack up failed:\n{up.stdout}\n{up.stderr}")
    wait(lambda: cloud.phase() == "Ready")
    return answered, time.monotonic() - started


def kill_under_load(cloud: Cloud, api: str, kills: int) -> tuple[int, int, list[float], list[str]]:
    """`unistack chaos`'s Rally-style load on every API while one pod of `api` is deleted
    `kills` times; requests sent and failed, the replacement times, the first errors."""
    state = StateDir.at(cloud.state_dir)
    recoveries: list[float] = []
    with loadgen.Load(cloud_of(state, load_access(state.kubeconfig)), workers=5) as load:
        for _ in range(kills):
            time.sleep(1.0)
            victim = cloud.ready_pods(api)[0]
            cloud.kubectl("-n", NS, "delete", "pod", victim, "--wait=false")

            def replaced(victim: str = victim) -> bool:
                names = cloud.ready_pods(api)
                return len(names) >= 2 and victim not in names

            recoveries.append(wait(replaced))
        time.sleep(1.0)
    samples = load.snapshot()
    failures = [f"{s.action}: {s.error}" for s in samples if not s.ok]
    return len(samples), len(failures), recoveries, failures[:3]


def upgrade_under_load(cloud: Cloud, release: str) -> tuple[int, list[str], dict[str, Any]]:
    """`unistack upgrade apply --to release` while the load runs: requests sent, the
    failures, and the ControlPlane's record of the upgrade (`status.upgrade`)."""
    state = StateDir.at(cloud.state_dir)
    with loadgen.Load(cloud_of(state, load_access(state.kubeconfig)), workers=5) as load:
        time.sleep(1.0)
        applied = cloud.unistack("upgrade", "apply", "--to", release, timeout=900)
        if applied.returncode != 0:
            raise SystemExit(f"upgrade to {release} failed:\n{applied.stdout}\n{applied.stderr}")
        time.sleep(1.0)
    samples = load.snapshot()
    failures = [f"{s.action}: {s.error}" for s in samples if not s.ok]
    path = f"/apis/{kind.GROUP}/{kind.VERSION}/namespaces/{kind.NAMESPACE}/{kind.PLURAL}"
    record = cloud.get(f"{path}/{kind.NAME}")["status"].get("upgrade") or {}
    if record.get("to") != release or not record.get("estimateSeconds"):
        raise SystemExit(f"no record of an estimated upgrade to {release}: {record}")
    return len(samples), failures, dict(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="state directory (default: a fresh temporary one)")
    parser.add_argument("--kills", type=int, default=3, help="pod kills per API (default 3)")
    parser.add_argument("--upgrades", type=int, default=2, help="upgrades in a row (default 2)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("haproxy"):
        raise SystemExit("needs root, runc and haproxy")
    console = Console()
    root = Path(args.state_dir or tempfile.mkdtemp(prefix="unistack-bench-cp-"))
    cloud = Cloud(root)
    try:
        answered, ready = start(cloud)
        table = Table(title="self-hosted control plane")
        for column in ("measure", "figure", "target", "ratio"):
            table.add_column(column)
        table.add_row("up → OpenStack answering", f"{answered:.1f} s", f"{UP_TARGET:.0f} s",
                      f"{UP_TARGET / answered:.2f}x")  # fmt: skip
        table.add_row("up → all API pods Ready", f"{ready:.1f} s", f"{UP_TARGET:.0f} s",
                      f"{UP_TARGET / ready:.2f}x")  # fmt: skip
        cloud.kubectl("-n", NS, "patch", "controlplane", "unistack", "--type", "merge",
                      "-p", json.dumps({"spec": {"size": "small"}}))  # fmt: skip
        wait(lambda: all(len(cloud.ready_pods(api)) == 2 for api in APIS), timeout=180)
        wait(lambda: cloud.phase() == "Ready")
        for api in APIS:
            sent, failed, recoveries, errors = kill_under_load(cloud, api, args.kills)
            median = statistics.median(recoveries)
            table.add_row(
                f"kill 1 of 2 {api}-api x{args.kills}: failed/sent",
                f"{failed}/{sent}",
                "0",
                "met" if failed == 0 else "; ".join(errors),
            )
            table.add_row(
                f"  {api}-api replacement Ready (median, max)",
                f"{median:.2f} s, {max(recoveries):.2f} s",
                f"{READY_TARGET:.0f} s",
                f"{READY_TARGET / median:.2f}x",
            )
        for number in range(1, args.upgrades + 1):
            release = f"0.0.{number}-bench{os.getpid()}"  # never the release running
            sent, failures, record = upgrade_under_load(cloud, release)
            actual, estimate = float(record["seconds"]), float(record["estimateSeconds"])
            error = (actual - estimate) / estimate
            table.add_row(
                f"upgrade {record['from']} → {release}: failed/sent",
                f"{len(failures)}/{sent}",
                "0",
                "met" if not failures else "; ".join(failures[:3]),
            )
            table.add_row(
                "  actual vs estimate",
                f"{actual:.1f} s vs {estimate:.1f} s ({error:+.0%})",
                f"±{ESTIMATE_TOLERANCE:.0%}",
                "met" if abs(error) <= ESTIMATE_TOLERANCE else "missed",
            )
        console.print(table)
    finally:
        cloud.unistack("down")
        if not args.state_dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
