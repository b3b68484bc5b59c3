"""End-to-end fixtures: a real `unistack up --detach` on a free port, and real clients.

The cluster is started once per test session in a temporary state dir and stopped with
`unistack down` at the end, even when tests fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from unistack.verify import tempest

UNISTACK = [sys.executable, "-m", "unistack.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    port: int

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def unistack(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*UNISTACK, *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        if shutil.which("kubectl") is None:
            pytest.skip("kubectl is not on the PATH")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        cache = str(self.state_dir / "kubectl-cache")
        result = subprocess.run(
            ["kubectl", "--cache-dir", cache, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def openstack(
        self, *args: str, check: bool = True, timeout: float = 60, **auth: str
    ) -> subprocess.CompletedProcess[str]:
        """The real `openstack` CLI as the cloud's admin, or as `auth` (OS_USERNAME=...)."""
        return self._openstack(list(args), None, check, timeout, auth)

    def openstack_cleanup(
        self, *commands: Sequence[str], timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Clean-up commands in one `openstack` process: its interactive shell reads them from
        stdin, as a person types them at the `(openstack)` prompt, so they share one start-up
        and one token. It goes on past a failing command, and its exit status is 1 whatever
        happened (cliff's interactive mode), so this is for what may fail: the caller checks
        what is left where that matters."""
        script = "".join(shlex.join(command) + "\n" for command in commands)
        return self._openstack([], script, False, timeout, {})

    def _openstack(
        self, args: list[str], script: str | None, check: bool, timeout: float, auth: dict
    ) -> subprocess.CompletedProcess[str]:
        command = shutil.which("openstack", path=str(Path(sys.executable).parent))
        if command is None:
            pytest.skip("python-openstackclient is not installed")
        env = {
            **os.environ,
            "OS_CLIENT_CONFIG_FILE": str(self.state_dir / "clouds.yaml"),
            "OS_CLOUD": "unistack",
            **auth,
        }
        result = subprocess.run(
            [command, *args], input=script, capture_output=True, text=True, env=env,
            timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            asked = script or " ".join(args)
            raise AssertionError(f"openstack {asked} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def openstack_json(self, *args: str, timeout: float = 60, **auth: str) -> Any:
        return json.loads(self.openstack(*args, "-f", "json", timeout=timeout, **auth).stdout)

    def server_status(self, server_id: str) -> str | None:
        """The server's Nova status from one plain `GET /servers/{id}` (None once it is
        gone): for waiting, where a CLI poll costs a process start and `--wait` sleeps 5 s
        between its looks. The CLI stays the judge of what is asked and shown."""
        try:
            return str(self._compute(f"/servers/{server_id}")["server"]["status"])
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def console_output(self, server_id: str) -> str:
        """The server's console log from one plain `os-getConsoleOutput` call (for waiting)."""
        action = {"os-getConsoleOutput": {}}
        return str(self._compute(f"/servers/{server_id}/action", action)["output"])

    def _compute(self, path: str, body: Any = None) -> Any:
        for attempt in (1, 2):
            token, compute = _admin_session(self.state_dir, self.port)
            headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(f"{compute}{path}", data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return json.load(answer)
            except urllib.error.HTTPError as error:
                if error.code != 401 or attempt == 2:
                    raise
                _SESSIONS.pop((self.state_dir, self.port), None)  # expired: log in again

    def create_server(self, *args: str, timeout: float = 180) -> dict:
        """`openstack server create ARGS`, waited for ACTIVE: the server's `server show`."""
        made = self.openstack_json("server", "create", *args)
        self.wait_server(made["id"], "ACTIVE", timeout)
        return dict(self.openstack_json("server", "show", made["id"]))

    def delete_servers(self, *servers: str, timeout: float = 120) -> None:
        """`openstack server delete SERVERS` (ids), waited for until they are gone."""
        self.openstack("server", "delete", *servers)
        for server_id in servers:
            self.wait_server(server_id, None, timeout)

    def wait_server(
        self, server_id: str, status: str | None, timeout: float = 180, failed: str = ""
    ) -> None:
        """Until the server's status is `status` (None: until it is gone). ERROR fails, and
        so does `failed`: where a failed action leaves it (ACTIVE for a migration)."""

        def reached() -> bool:
            now = self.server_status(server_id)
            for bad in ("ERROR", failed):
                assert now != bad or status == bad, f"server {server_id} went to {bad}"
            return now == status

        wait_for(reached, f"server {server_id} to be {status or 'gone'}", timeout)


_SESSIONS: dict[tuple[Path, int], tuple[str, str]] = {}


def _admin_session(state_dir: Path, port: int) -> tuple[str, str]:
    """A token for the cloud's admin (clouds.yaml) and the compute endpoint of its catalog,
    kept per cluster (its state dir and API port: an `up` again writes new addresses)."""
    if (state_dir, port) not in _SESSIONS:
        token = tempest.authenticate(tempest.load_cloud(state_dir / "clouds.yaml"))
        _SESSIONS[state_dir, port] = (token.value, token.endpoints["compute"])
    return _SESSIONS[state_dir, port]


# Each test cluster gets its own bridge, pod CIDR and node name (and free ports), so that
# clusters of one run, and a unistack the developer runs on the same host, do not collide.
INSTANCES = {
    "e2e": "10.247.0.0/24",
    "crash": "10.248.0.0/24",
    "down": "10.249.0.0/24",
    "hosts": "10.251.0.0/24",  # and 10.251.1.0/24 for its second host
    "tenants": "10.252.0.0/24",
    "self": "10.245.0.0/24",
}
# ... and its own public network, so the external bridges and their gateway addresses differ.
PUBLIC_CIDRS = {
    "e2e": "172.24.10.0/24",
    "crash": "172.24.11.0/24",
    "down": "172.24.12.0/24",
    "hosts": "172.24.13.0/24",
    "tenants": "172.24.14.0/24",
    "self": "172.24.15.0/24",
}


def in_netns(name: str) -> list[str]:
    """The argv prefix that runs a command in network namespace `name` only: `ip netns exec`
    would also give it a mount namespace, pinning every mount (a cloud's volume pool) for as
    long as the command runs."""
    return ["nsenter", f"--net=/run/netns/{name}", "--"]


@contextlib.contextmanager
def running(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A background command, killed with everything it started when the block ends."""
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `check` until it is true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def live_pods(cluster: Cluster, ns: str, selector: str) -> list[dict]:
    """The pods matching `selector` that are not being deleted."""
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def start_cluster(state_dir: Path, port: int, instance: str = "e2e", *extra: str) -> Cluster:
    """`unistack up` with this instance's names and free ports, plus `extra` options."""
    cluster = Cluster(state_dir, port)
    host = ("--bridge", f"unistack{instance}", "--pod-cidr", INSTANCES[instance],
            "--public-cidr", PUBLIC_CIDRS[instance])  # fmt: skip
    ports = ("--registry-port", "--agent-port", "--dns-port", "--openstack-port")
    chosen = [item for flag in ports for item in (flag, str(free_port()))]
    up = cluster.unistack(
        "up",
        "--detach",
        "--port",
        str(port),
        "--node-name",
        f"{instance}-agent",
        *host,
        *chosen,
        *extra,
    )
    if up.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in (state_dir / "logs").glob("*.log"))
        raise AssertionError(f"unistack up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
    return cluster


@pytest.fixture(scope="session", autouse=True)
def no_crashed_clusters(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`unistack down` the clusters of earlier runs that were killed before their teardown.

    Every run names its clusters' bridges, host namespaces and pod CIDRs alike (INSTANCES),
    so what a killed run left (its pods' veths and addresses on a bridge of the same name)
    would answer for this run's pods. pytest keeps the last runs' directories; a state dir
    still naming a supervisor that is no longer running is such a leftover.
    """
    from unistack.cli import launch
    from unistack.cli.statedir import StateDir

    runs = tmp_path_factory.getbasetemp().parent
    for root in sorted(runs.glob("pytest-*/unistack-*")):
        state = StateDir(root)
        if root.is_symlink() or not state.supervisor_pid.exists():
            continue
        if launch.running_supervisor(state) is None:
            subprocess.run([*UNISTACK, "down", "--state-dir", str(root)], capture_output=True,
                           timeout=300, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(tmp_path_factory.mktemp("unistack-state"), free_port())
    try:
        yield running
    finally:
        running.unistack("down")
