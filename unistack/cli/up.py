"""`unistack up`: prepare the state directory and start the supervised control plane.

`prepare` creates the state directory, the PKI (`pki`), the admin token and kubeconfig
(`kubeconfig`) and records the options. `up` then starts the supervisor (`launch`,
`supervisor`) as a child process and waits until the API server's `/readyz` answers. In the
foreground it stays until Ctrl-C, which stops the supervisor and with it every child; with
`--detach` the supervisor gets its own session and `up` exits once the API is ready. `down`
is the inverse.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.console import Console

from unistack.cli import apicall, clouds, hostoptions, hosts, kubeconfig, launch, pki, serve
from unistack.cli.hostoptions import HostOptions
from unistack.cli.statedir import StateDir, write_private
from unistack.controlplane import accounts

READY_TIMEOUT = 60.0
GATEWAY_TIMEOUT = 30.0
SELF_HOSTED_TIMEOUT = 240.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 30


def pki_files(state: StateDir) -> pki.PkiFiles:
    return pki.PkiFiles(state.ca_cert, state.ca_key, state.serving_cert, state.serving_key)


def prepare(
    state: StateDir, port: int, driver: str, host: HostOptions | None = None
) -> kubeconfig.ApiAccess:
    """Create (or reuse) everything `up` needs on disk; return how to reach the API."""
    state.create()
    host = resolve_control_plane(host or HostOptions(driver=driver))
    underlay = (hosts.underlay_gateway(host),) if host.hosts > 1 else ()
    # the control-plane pods reach the API server at the host's address on the pod bridge
    on_bridge = (host.gateway,) if host.self_hosted else ()
    pki.ensure_pki(pki_files(state), addresses=(*underlay, *on_bridge))
    pki.ensure_signing_key(state.service_account_key)
    token = kubeconfig.ensure_admin_token(state.tokens)
    access = kubeconfig.ApiAccess(kubeconfig.server_url(port), state.ca_cert.read_bytes(), token)
    kubeconfig.write_kubeconfig(state.kubeconfig, access)
    # each host's agent is its node to the API server (system:node:<name>, `accounts`);
    # the extra hosts' agents reach it over the underlay
    names = serve.node_names(host)
    for index, node in enumerate(names, start=1):
        address = underlay[0] if underlay and index > 1 else kubeconfig.DEFAULT_HOST
        server = kubeconfig.server_url(port, address)
        user = accounts.node_user(node)
        node_token = kubeconfig.ensure_token(state.tokens, user, accounts.NODE_GROUP)
        path = serve.node_kubeconfig(state, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_kubeconfig(path, kubeconfig.ApiAccess(server, access.ca_pem, node_token))
    retire_node_tokens(state, names[0], len(names))
    # the supervisor's processes call it as their own users, each with its part's roles
    for part in accounts.SUPERVISED:
        user = accounts.supervised_user(part)
        part_token = kubeconfig.ensure_token(state.tokens, user, accounts.SUPERVISED_GROUP)
        path = serve.supervised_kubeconfig(state, part)
        path.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_kubeconfig(path, dataclasses.replace(access, token=part_token))
    if not state.agent_token.exists():
        write_private(state.agent_token, secrets.token_urlsafe(32))
    clouds.prepare(state, host.openstack_url)
    state.save_settings({"port": port, "driver": driver, "host": host.to_json()})
    return access


def retire_node_tokens(state: StateDir, node_name: str, count: int) -> None:
    """The tokens and kubeconfigs of hosts an earlier `up --hosts` ran beyond `count`: a
    host that no longer runs keeps no credential."""
    prefix = accounts.node_user("")
    users = [e.user for e in kubeconfig.parse_tokens(state.tokens.read_text())]
    nodes = [user.removeprefix(prefix) for user in users if user.startswith(prefix)]
    retired = hosts.retired_nodes(nodes, node_name, count)
    kubeconfig.remove_tokens(state.tokens, {accounts.node_user(node) for node in retired})
    for node in retired:
        index = int(node.removeprefix(f"{node_name}-"))
        shutil.rmtree(serve.node_kubeconfig(state, index).parent, ignore_errors=True)


def resolve_control_plane(host: HostOptions) -> HostOptions:
    """`--control-plane auto`: pods where the agent will run real containers, else processes
    (without root or runc, pods would be bookkeeping only and nothing would serve the APIs)."""
    if host.control_plane != "auto":
        return host
    from unistack.agent.main import can_run_containers

    able = host.driver != "fake" and can_run_containers()[0]
    return dataclasses.replace(host, control_plane="pods" if able else "processes")


def up(
    state: StateDir,
    port: int,
    driver: str,
    detach: bool,
    console: Console,
    host: HostOptions | None = None,
) -> int:
    """Run `unistack up`; returns the exit code."""
    running = launch.running_supervisor(state)
    if running is not None:
        console.print(
            f"[red]unistack is already running from {state.root} (supervisor pid "
            f"{running.pid}).[/] Use `unistack status`, or `unistack down` first."
        )
        return 1
    access = prepare(state, port, driver, host)
    options = hostoptions.load(state)
    if options.hosts > 1:
        hosts.setup(options, serve.agent_settings(state).node_name)
    if detach:
        return _run_detached(state, port, access, console)
    return _run_foreground(state, port, access, console)


def start_supervisor(state: StateDir, port: int, detach: bool) -> subprocess.Popen[bytes]:
    """Start `unistack supervise` for `state`; detached means its own session and log file."""
    argv = launch.supervisor_argv(state, port)
    if not detach:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    with state.log("supervisor").open("ab") as output:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(
    access: kubeconfig.ApiAccess,
    supervisor: subprocess.Popen[bytes],
    timeout: float = READY_TIMEOUT,
    interval: float = 0.25,
) -> bool:
    """True once `/readyz` answers 200; False on timeout or if the supervisor exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and supervisor.poll() is None:
        try:
            if apicall.request(access, "GET", "/readyz", timeout=2.0).status == 200:
                return True
        except apicall.ApiUnreachable:
            pass
        time.sleep(interval)
    return False


def retire_hosts(state: StateDir, access: kubeconfig.ApiAccess, console: Console) -> None:
    """Delete the Nodes of extra hosts an earlier `up --hosts` ran and this one does not."""
    options = hostoptions.load(state)
    try:
        listed = apicall.request(access, "GET", "/api/v1/nodes")
        if listed.status != 200:
            return
        names = [item["metadata"]["name"] for item in json.loads(listed.body)["items"]]
        node_name = serve.agent_settings(state).node_name
        for name in hosts.retired_nodes(names, node_name, options.hosts):
            deleted = apicall.request(access, "DELETE", f"/api/v1/nodes/{name}")
            if deleted.status in (200, 404):
                console.print(f"host {name} is no longer run: its Node is deleted")
    except apicall.ApiUnreachable:
        return


def wait_gateway(url: str, timeout: float = GATEWAY_TIMEOUT, interval: float = 0.25) -> bool:
    """True once the OpenStack gateway's identity version document answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/identity/v3", timeout=2.0) as answer:
                if answer.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(interval)
    return False


def _report_gateway(state: StateDir, console: Console) -> None:
    options = hostoptions.load(state)
    # Self-hosted, the first start on a machine also builds the control-plane image.
    timeout = SELF_HOSTED_TIMEOUT if options.self_hosted else GATEWAY_TIMEOUT
    if not wait_gateway(options.openstack_url, timeout):
        console.print("[yellow]the OpenStack gateway is not answering yet[/]; see its log:")
        logs = ("gateway", "controllers") if options.self_hosted else ("openstack",)
        for name in logs:
            print(log_tail(state.log(name)), flush=True)


def print_endpoints(state: StateDir, access: kubeconfig.ApiAccess) -> None:
    """The endpoints, as plain lines (scripts grep them; no wrapping)."""
    gateway = hostoptions.load(state).openstack_url
    print(f"Kubernetes API  {access.server}")
    print(f"OpenStack API  {gateway}/identity")
    print(f"kubeconfig  {state.kubeconfig}")
    print(f"clouds.yaml  {state.clouds_yaml}")
    print(f"export KUBECONFIG={state.kubeconfig}")
    print(
        f"export OS_CLIENT_CONFIG_FILE={state.clouds_yaml} OS_CLOUD={clouds.CLOUD_NAME}", flush=True
    )


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def stop(supervisor: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a supervisor this process started (it stops its own children first)."""
    if supervisor.poll() is None:
        supervisor.terminate()
    try:
        supervisor.wait(timeout)
    except subprocess.TimeoutExpired:
        supervisor.kill()
        supervisor.wait()


def _report_not_ready(state: StateDir, console: Console, supervisor_log: bool) -> None:
    console.print(f"[red]the API server did not become ready[/] (state dir {state.root})")
    console.print(f"last lines of {state.log('apiserver')}:", highlight=False)
    print(log_tail(state.log("apiserver")), flush=True)
    if supervisor_log:
        console.print(f"last lines of {state.log('supervisor')}:", highlight=False)
        print(log_tail(state.log("supervisor")), flush=True)


def _run_detached(
    state: StateDir, port: int, access: kubeconfig.ApiAccess, console: Console
) -> int:
    supervisor = start_supervisor(state, port, detach=True)
    if not wait_ready(access, supervisor):
        _report_not_ready(state, console, supervisor_log=supervisor.poll() is not None)
        console.print("stopping the supervisor")
        stop(supervisor)
        return 1
    retire_hosts(state, access, console)
    _report_gateway(state, console)
    print_endpoints(state, access)
    return 0


def _run_foreground(
    state: StateDir, port: int, access: kubeconfig.ApiAccess, console: Console
) -> int:
    supervisor = start_supervisor(state, port, detach=False)
    interrupted: list[int] = []
    restore = _forward_stop_signals(supervisor, interrupted)
    try:
        if wait_ready(access, supervisor):
            retire_hosts(state, access, console)
            _report_gateway(state, console)
            print_endpoints(state, access)
            console.print("unistack is up; press Ctrl-C to stop it")
        elif not interrupted and supervisor.poll() is None:
            _report_not_ready(state, console, supervisor_log=False)
            console.print("still trying (the supervisor restarts it); press Ctrl-C to stop")
        code = supervisor.wait()
    finally:
        restore()
        stop(supervisor)
    console.print("unistack stopped")
    return 0 if interrupted else code


def _forward_stop_signals(
    supervisor: subprocess.Popen[bytes], received: list[int]
) -> Callable[[], None]:
    """Pass SIGINT/SIGTERM on to the supervisor; returns a function restoring the handlers."""

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if supervisor.poll() is None:
            supervisor.send_signal(signum)

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, forward) for signum in stop_signals}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
