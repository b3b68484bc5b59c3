"""`unistack down`: stop everything `unistack up` started from a state directory.

Teardown is a list of cleanup steps run in order (`CLEANUP_STEPS`). Each step is idempotent
and returns a line saying what it did, or None when there was nothing to do, so running
`down` twice, or with nothing running, succeeds. Later issues append steps here: network
namespaces, bridges, nftables tables, loop devices, mounts.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

from rich.console import Console

from unistack.cli import launch, processes
from unistack.cli.statedir import StateDir

STOP_TIMEOUT = 15.0

CleanupStep = Callable[[StateDir], str | None]


def stop_supervisor(state: StateDir) -> str | None:
    """SIGTERM the supervisor, wait for it and its children, SIGKILL after STOP_TIMEOUT."""
    supervisor = launch.running_supervisor(state)
    if supervisor is None:
        state.supervisor_pid.unlink(missing_ok=True)
        return None
    children = processes.children_of(supervisor.pid)
    processes.send(supervisor, signal.SIGTERM)
    left = processes.wait_gone([supervisor, *children], STOP_TIMEOUT)
    if processes.is_running(supervisor):
        left = list({*left, *processes.children_of(supervisor.pid)})
    killed = processes.terminate_now(left)
    state.supervisor_pid.unlink(missing_ok=True)
    summary = f"stopped the supervisor (pid {supervisor.pid}) and {len(children)} children"
    return summary + (f"; killed {len(killed)} that did not stop in time" if killed else "")


def remove_host_objects(state: StateDir) -> str | None:
    """Containers, network namespaces, mounts, cgroups, the bridge and nftables tables."""
    if not state.settings.exists():
        return None
    import asyncio

    from unistack.agent import main as agent_main
    from unistack.cli import serve

    done = asyncio.run(agent_main.cleanup(serve.agent_settings(state)))
    return "; ".join(done) if done else None


def remove_extra_hosts(state: StateDir) -> str | None:
    """Each extra host's agent cleans up inside its namespace; then the namespaces, their
    veths and the underlay bridge go (`cli.hosts`)."""
    if not state.settings.exists():
        return None
    from unistack.cli import hostoptions, hosts

    options = hostoptions.load(state)
    extra = launch.extra_hosts(state)
    for host in extra:
        clean = ("serve", "agent", "--state-dir", str(state.root), "--host", str(host.index))
        # With its namespace gone (another cloud with the same bridge name removed it after a
        # crash), what is left of the host is on the machine: its pods' namespaces, mounts,
        # loop devices, cgroups. The cleanup finds those from the host's state directory.
        inside = hosts.enter(host) if (hosts.NETNS_DIR / host.netns).exists() else ()
        argv = [*inside, *launch.self_command(), *clean, "--cleanup"]
        subprocess.run(argv, capture_output=True, timeout=120, check=False)
    if not extra:
        return None
    removed = hosts.teardown(options, extra)
    return f"removed {len(extra)} extra hosts ({', '.join(removed)})" if removed else None


CLEANUP_STEPS: list[tuple[str, CleanupStep]] = [
    ("supervisor", stop_supervisor),
    ("hosts", remove_extra_hosts),
    ("host", remove_host_objects),
]


def down(state: StateDir, console: Console) -> int:
    """Run every cleanup step; exit code 1 if any failed."""
    failed = False
    did_something = False
    for name, step in CLEANUP_STEPS:
        try:
            done = step(state)
        except Exception as error:  # the next steps still clean up what they can
            console.print(f"[red]{name}: {type(error).__name__}: {error}[/]")
            failed = True
            continue
        if done:
            console.print(done, highlight=False)
            did_something = True
    if not did_something and not failed:
        console.print(f"nothing running from {state.root}", highlight=False)
    return 1 if failed else 0
