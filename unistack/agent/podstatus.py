"""A pod's status from what the worker knows about its containers (pure).

The kubelet's rules: phase Pending until every container has started once; Running while any
container runs or will be restarted; Succeeded when all ended with 0 and none will restart;
Failed when all ended, one with an error, and none will restart. Conditions
PodReadyToStartContainers, Initialized, ContainersReady and Ready (kept PodScheduled from the
scheduler), container states (waiting with a reason, running since, terminated with exit code
and reason), lastState, restartCount, ready and started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unistack.agent.runtime import Exit
from unistack.runtime.events import timestamp

Obj = dict[str, Any]


@dataclass(slots=True)
class Track:
    """One container as the worker tracks it."""

    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    container_id: str = ""
    started_at: float = 0.0
    running: bool = False
    exit: Exit | None = None  # the current run's end, if it ended
    last_exit: Exit | None = None  # the previous run's end
    last_started_at: float = 0.0
    last_container_id: str = ""
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    ready: bool = False
    started: bool = False
    will_restart: bool = True
    image_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def exit_reason(end: Exit) -> str:
    if end.oom_killed:
        return "OOMKilled"
    return "Completed" if end.exit_code == 0 else "Error"


def _terminated(end: Exit, started_at: float, container_id: str) -> Obj:
    state: Obj = {
        "exitCode": end.exit_code,
        "reason": exit_reason(end),
        "startedAt": timestamp(started_at) if started_at else None,
        "finishedAt": timestamp(end.finished_at) if end.finished_at else None,
        "containerID": container_id,
    }
    if end.signal:
        state["signal"] = end.signal
    return state


def container_status(track: Track) -> Obj:
    status: Obj = {
        "name": track.name,
        "image": track.image,
        "imageID": track.image_id,
        "ready": track.ready,
        "restartCount": track.restart_count,
        "started": track.started if not track.init else track.running,
        "lastState": {},
    }
    if track.container_id:
        status["containerID"] = track.container_id
    if track.running:
        status["state"] = {"running": {"startedAt": timestamp(track.started_at)}}
    elif track.exit is not None and not track.waiting_reason:
        status["state"] = {
            "terminated": _terminated(track.exit, track.started_at, track.container_id)
        }
    else:
        waiting: Obj = {"reason": track.waiting_reason or "ContainerCreating"}
        if track.waiting_message:
            waiting["message"] = track.waiting_message
        status["state"] = {"waiting": waiting}
    if track.last_exit is not None:
        status["lastState"] = {
            "terminated": _terminated(
                track.last_exit, track.last_started_at, track.last_container_id
            )
        }
    return status


def phase(inits: list[Track], apps: list[Track], sandbox_ready: bool) -> str:
    if any(t.exit is not None and t.exit.exit_code != 0 and not t.will_restart for t in inits):
        return "Failed"
    if not sandbox_ready or not all(t.exit is not None and t.exit.exit_code == 0 for t in inits):
        return "Pending"
    if not all(t.running or t.exit is not None for t in apps):
        return "Pending"
    if any(t.running or t.will_restart for t in apps):
        return "Running"
    if all(t.exit is not None and t.exit.exit_code == 0 for t in apps):
        return "Succeeded"
    return "Failed"


def _condition(kind: str, ok: bool, now: str, old: dict[str, Obj], reason: str = "") -> Obj:
    status = "True" if ok else "False"
    previous = old.get(kind)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    condition: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if not ok and reason:
        condition["reason"] = reason
    return condition


def build(
    pod: Obj,
    inits: list[Track],
    apps: list[Track],
    *,
    sandbox_ready: bool,
    pod_ip: str,
    host_ip: str,
    now: float,
    start_time: float,
) -> Obj:
    """The whole `status` to write for `pod`."""
    old_status = pod.get("status") or {}
    old = {c["type"]: c for c in old_status.get("conditions") or []}
    stamp = timestamp(now)
    initialized = all(t.exit is not None and t.exit.exit_code == 0 for t in inits)
    ready = initialized and all(t.ready for t in apps)
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, stamp, old),
        _condition("Initialized", initialized, stamp, old, "ContainersNotInitialized"),
        _condition("Ready", ready, stamp, old, "ContainersNotReady"),
        _condition("ContainersReady", ready, stamp, old, "ContainersNotReady"),
    ]
    if "PodScheduled" in old:
        conditions.append(old["PodScheduled"])
    status: Obj = {
        "phase": phase(inits, apps, sandbox_ready),
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": timestamp(start_time),
        "containerStatuses": [container_status(t) for t in apps],
    }
    if inits:
        status["initContainerStatuses"] = [container_status(t) for t in inits]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if old_status.get("qosClass"):
        status["qosClass"] = old_status["qosClass"]
    return status


def same(old: Obj, new: Obj) -> bool:
    """Equal apart from timestamps that do not matter (no write needed)."""
    return {k: v for k, v in old.items() if k != "startTime"} == {
        k: v for k, v in new.items() if k != "startTime"
    }
