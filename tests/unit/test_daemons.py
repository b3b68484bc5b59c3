"""Host daemons' start and stop (`dataplane.daemons`) with real processes: a daemon that
forks a helper into its group, as radvd does, leaves neither running nor a zombie."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from unistack.dataplane import daemons

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    """This test process adopts orphans, as the agent does (undone when the test ends)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) refused")
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_stop_ends_and_reaps_a_helper_forked_into_the_group(
    tmp_path: Path, subreaper: None
) -> None:
    helper_file = tmp_path / "helper.pid"
    # Python, not sh: a shell cannot trap a signal ignored when it started (as under nohup)
    script = f"""
import os, signal, time
helper = os.fork()
if helper == 0:
    time.sleep(300)
    os._exit(0)
signal.signal(signal.SIGHUP, lambda *_: None)
with open({str(helper_file)!r} + ".tmp", "w") as out:
    out.write(str(helper))
os.replace({str(helper_file)!r} + ".tmp", {str(helper_file)!r})
while True:
    time.sleep(0.05)
"""
    log = tmp_path / "out"

    def ready(pid: int) -> bool:
        return helper_file.exists() and daemons.catches(pid, signal.SIGHUP)

    leader = daemons.start([sys.executable, "-c", script], log, ready)
    helper = int(helper_file.read_text())
    assert os.getpgid(helper) == leader  # the helper is in the daemon's group
    daemons.stop(leader)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{helper}").exists():  # gone, not a zombie: reaped here
        assert time.monotonic() < deadline, "the helper was left (running or a zombie)"
        time.sleep(0.02)
    assert not Path(f"/proc/{leader}").exists()


def test_catches_reads_the_signal_mask() -> None:
    assert daemons.catches(os.getpid(), signal.SIGINT)  # Python's KeyboardInterrupt handler
    assert not daemons.catches(2**22 + 12345, signal.SIGHUP)  # no such process
