"""unistack.cli.supervisor and `unistack down`: real child processes, bounded waits.

Each test starts its own supervisor process and kills whatever it started if the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from unistack.cli import launch, main, processes, supervisor
from unistack.cli.statedir import StateDir

SUPERVISOR_SCRIPT = """
import json, logging, sys
from pathlib import Path
from unistack.cli.supervisor import Backoff, ChildSpec, Supervisor
logging.basicConfig(level=logging.INFO)
cfg = json.loads(sys.argv[1])
children = [ChildSpec(name, tuple(argv)) for name, argv in cfg["children"].items()]
backoff = Backoff(initial=0.05, maximum=0.2, reset_after=60.0)
sys.exit(Supervisor(children, Path(cfg["logs"]), Path(cfg["pid_file"]), backoff,
                    grace=cfg["grace"], poll_interval=0.05).run())
"""

Start = Callable[..., subprocess.Popen[bytes]]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip().isdigit())
    return int(path.read_text())


def alive(pid: int) -> bool:
    return processes.identify(pid) is not None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start a supervisor over the given children; kill leftovers at the end."""
    started: list[subprocess.Popen[bytes]] = []
    children: list[processes.ProcessId] = []

    def run(children: dict[str, list[str]], grace: float = 5.0) -> subprocess.Popen[bytes]:
        cfg = {
            "children": children,
            "logs": str(tmp_path / "logs"),
            "pid_file": str(tmp_path / "supervisor.pid"),
            "grace": grace,
        }
        process = subprocess.Popen(python(SUPERVISOR_SCRIPT, json.dumps(cfg)))
        started.append(process)
        return process

    yield run
    for process in started:
        children.extend(processes.children_of(process.pid))
        process.kill()
        process.wait()
    processes.terminate_now(children)


def test_backoff_doubles_to_a_cap_and_resets_after_a_long_run() -> None:
    backoff = supervisor.Backoff()
    delays = [backoff.next_delay(None, 0.0)]
    for _ in range(6):
        delays.append(backoff.next_delay(delays[-1], 0.5))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(30.0, 61.0) == 1.0


def test_a_child_that_exits_is_restarted(start: Start, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = "import sys; open(sys.argv[1], 'a').write('run\\n'); sys.exit(3)"
    supervisor_process = start({"flaky": python(code, str(runs))})
    wait_for(lambda: runs.exists() and runs.read_text().count("run") >= 3)
    supervisor_process.send_signal(signal.SIGTERM)
    assert supervisor_process.wait(timeout=10) == 0
    assert (tmp_path / "logs" / "flaky.log").read_text().count("starting") >= 3


def test_sigterm_stops_children_and_removes_the_pid_file(start: Start, tmp_path: Path) -> None:
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
    pid_files = {name: tmp_path / f"{name}.pid" for name in ("one", "two")}
    supervisor_process = start({name: python(code, str(p)) for name, p in pid_files.items()})
    child_pids = [pid_in(path) for path in pid_files.values()]
    assert pid_in(tmp_path / "supervisor.pid") == supervisor_process.pid
    supervisor_process.send_signal(signal.SIGTERM)
    assert supervisor_process.wait(timeout=10) == 0
    assert not any(alive(pid) for pid in child_pids)
    assert not (tmp_path / "supervisor.pid").exists()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(start: Start, tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
    )
    supervisor_process = start({"stubborn": python(code, str(tmp_path / "c.pid"))}, grace=0.5)
    child = pid_in(tmp_path / "c.pid")
    began = time.monotonic()
    supervisor_process.send_signal(signal.SIGTERM)
    assert supervisor_process.wait(timeout=10) == 0
    assert time.monotonic() - began < 5
    assert not alive(child)


def test_children_die_with_a_killed_supervisor(start: Start, tmp_path: Path) -> None:
    code = (
        "import os, sys, time; from unistack.cli.supervisor import bind_to_supervisor; "
        "bind_to_supervisor(); open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
    )
    supervisor_process = start({"bound": python(code, str(tmp_path / "c.pid"))})
    child = processes.identify(pid_in(tmp_path / "c.pid"))
    assert child is not None
    supervisor_process.kill()
    supervisor_process.wait(timeout=10)
    try:
        wait_for(lambda: not processes.is_running(child), timeout=5)
    finally:
        processes.terminate_now([child])


def test_down_with_nothing_running_succeeds(tmp_path: Path) -> None:
    state = StateDir.at(tmp_path / "state")
    assert main.main(["down", "--state-dir", str(state.root)]) == 0
    state.create()
    state.supervisor_pid.write_text(f"{os.getpid()}\n")  # alive, but not a supervisor
    assert main.main(["down", "--state-dir", str(state.root)]) == 0
    assert not state.supervisor_pid.exists()


def test_supervisor_is_recognised_by_its_command_line(tmp_path: Path) -> None:
    state = StateDir.at(tmp_path)
    argv = launch.supervisor_argv(state, 6443)
    assert launch.is_supervisor_of(argv, state)
    assert not launch.is_supervisor_of(argv, StateDir.at(tmp_path / "other"))
    assert not launch.is_supervisor_of([sys.executable, "-m", "pytest"], state)


def test_down_stops_a_real_supervisor(tmp_path: Path) -> None:
    # No PKI in the state dir, so the children exit at once and keep being restarted.
    state = StateDir.at(tmp_path / "state")
    state.create()
    process = subprocess.Popen(launch.supervisor_argv(state, 1), stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: launch.running_supervisor(state) is not None)
        assert main.main(["up", "--state-dir", str(state.root), "--port", "1"]) == 1
        assert main.main(["down", "--state-dir", str(state.root)]) == 0
        assert process.wait(timeout=20) == 0
        assert not state.supervisor_pid.exists()
    finally:
        process.kill()
        process.wait()
