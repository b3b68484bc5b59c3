"""`unistack down` runs every cleanup step, also after one fails."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from unistack.cli import down
from unistack.cli.statedir import StateDir


def test_a_failing_step_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def broken(state: StateDir) -> str | None:
        ran.append("broken")
        raise EOFError  # what the QMP client raised when a VM's QEMU hung up first

    def last(state: StateDir) -> str | None:
        ran.append("last")
        return "removed the bridge"

    monkeypatch.setattr(down, "CLEANUP_STEPS", [("instances", broken), ("host", last)])
    out = io.StringIO()
    assert down.down(StateDir.at(tmp_path), Console(file=out, width=200)) == 1
    assert ran == ["broken", "last"]
    assert "instances: EOFError" in out.getvalue()
    assert "removed the bridge" in out.getvalue()
