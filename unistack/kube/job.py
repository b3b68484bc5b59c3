"""The Job controller: runs a Job's pods until enough succeed, or too many fail.

For each Job (queue key `namespace/name`) the pure `decide_job` looks at the pods of its
namespace, as kube-controller-manager's job controller does for NonIndexed jobs: it counts
the pods it owns that its selector matches (orphans are not adopted yet) that Succeeded or
Failed, keeps `parallelism` pods active (never more than the completions still missing),
and marks the Job Complete once `completions` pods have succeeded or Failed (reason
BackoffLimitExceeded) once more than `backoffLimit` have failed, deleting what still runs. A
suspended Job has its active pods deleted. Status (active, ready, succeeded, failed,
startTime, completionTime, conditions) goes through the status subresource. `JobController`
observes (informers on Jobs and Pods) and acts; the pod helpers and `Expectations` come from
`unistack.kube.replicaset`. Pod finalizers (upstream's job tracking) are not used: a pod
deleted before this controller counted it is not counted.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from unistack.client.api import Client
from unistack.client.resources import JOBS, PODS
from unistack.kube import replicaset
from unistack.kube.podcontrol import PodControl
from unistack.kube.replicaset import (
    Action,
    CreatePods,
    DeletePods,
    Obj,
    UpdateStatus,
)
from unistack.runtime.controller import (
    Controller,
    enqueue_objects,
    enqueue_owners,
    run_with_informers,
)
from unistack.runtime.informer import SharedInformers, namespace_index
from unistack.runtime.workqueue import WorkQueue

JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME = "job-name"


# --- decisions (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodCounts:
    """A Job's claimed pods by state."""

    active: tuple[Obj, ...]
    succeeded: int
    failed: int


def count_pods(pods: Iterable[Obj]) -> PodCounts:
    active: list[Obj] = []
    succeeded = failed = 0
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            succeeded += 1
        elif phase == "Failed":
            failed += 1
        elif not replicaset.is_terminating(pod):
            active.append(pod)
    return PodCounts(tuple(active), succeeded, failed)


def format_time(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_finished(job: Obj) -> bool:
    """The Job has a Complete or Failed condition that is True."""
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )


def _condition(kind: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _outcome(job: Obj, counts: PodCounts, now: str) -> Obj | None:
    """The finishing condition the counts call for, or None while the Job runs on."""
    spec = job.get("spec") or {}
    if counts.failed > int(spec.get("backoffLimit", 6)):
        message = "Job has reached the specified backoff limit"
        return _condition("Failed", "BackoffLimitExceeded", message, now)
    completions = spec.get("completions")
    done = (
        counts.succeeded >= int(completions)
        if completions is not None
        else counts.succeeded > 0 and not counts.active
    )
    if done:
        message = "Reached expected number of succeeded pods"
        return _condition("Complete", "CompletionsReached", message, now)
    return None


def wanted_active(job: Obj, counts: PodCounts) -> int:
    """Pods to keep running: `parallelism`, but no more than the completions still missing."""
    spec = job.get("spec") or {}
    if spec.get("suspend") is True:
        return 0
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    if completions is None:
        return parallelism if counts.succeeded == 0 else 0
    return max(0, min(parallelism, int(completions) - counts.succeeded))


def manage_active(job: Obj, active: tuple[Obj, ...], wanted: int) -> list[Action]:
    diff = len(active) - wanted
    if diff < 0 and not replicaset.is_terminating(job):
        return [CreatePods(min(-diff, replicaset.BURST_REPLICAS))]
    if diff > 0:
        doomed = replicaset.pods_to_delete(active, diff)
        return [DeletePods(tuple(p["metadata"]["name"] for p in doomed))]
    return []


def _all_names(pods: Iterable[Obj]) -> list[Action]:
    names = tuple(p["metadata"]["name"] for p in pods)
    return [DeletePods(names)] if names else []


def job_status(job: Obj, counts: PodCounts, active: int, now: str) -> Obj:
    current = job.get("status") or {}
    status: Obj = {
        "active": active,
        "ready": sum(1 for p in counts.active if replicaset.is_ready(p)) if active else 0,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
    }
    if current.get("conditions"):
        status["conditions"] = list(current["conditions"])
    if current.get("startTime") or not (job.get("spec") or {}).get("suspend"):
        status["startTime"] = current.get("startTime") or now
    return status


def decide_job(
    job: Obj, pods: Iterable[Obj], now: datetime.datetime, *, manage: bool = True
) -> list[Action]:
    """What to do for a Job given the pods of its namespace (nothing once it has finished).

    `manage=False` (earlier creations or deletions not yet observed) only reports status.
    """
    if is_finished(job):
        return []
    stamp = format_time(now)
    uid = job["metadata"]["uid"]
    claim = replicaset.claim_pods(job, pods)  # orphans are counted only once adopted
    counts = count_pods(p for p in claim.pods if replicaset.owned_by(p, uid))
    actions: list[Action] = []
    outcome = _outcome(job, counts, stamp)
    if outcome is not None:
        actions += _all_names(counts.active)
        status = job_status(job, counts, 0, stamp)
        status["conditions"] = [*status.get("conditions", []), outcome]
        if outcome["type"] == "Complete":
            status["completionTime"] = stamp
        return [*actions, UpdateStatus(status)]
    wanted = wanted_active(job, counts)
    if manage:
        actions += manage_active(job, counts.active, wanted)
    status = job_status(job, counts, len(counts.active), stamp)
    if _status_changed(job, status):
        actions.append(UpdateStatus(status))
    return actions


def _status_changed(job: Obj, status: Obj) -> bool:
    current = job.get("status") or {}
    return any(current.get(key, 0) != value for key, value in status.items())


def pod_for_job(job: Obj) -> Obj:
    """A new pod from the Job's template, generateName `<job>-`, with the job-name labels."""
    pod = replicaset.pod_from_template(job)
    name = job["metadata"]["name"]
    pod["metadata"]["labels"].update({LEGACY_JOB_NAME: name, JOB_NAME: name})
    return pod


# --- the controller ---------------------------------------------------------------------------


class JobController:
    """Watches Jobs and Pods; runs each Job's pods to completion or failure."""

    def __init__(
        self, client: Client, *, informers: SharedInformers | None = None, workers: int = 2
    ) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.jobs = shared.informer(JOBS, indexers={"namespace": namespace_index})
        self.pods = shared.informer(PODS, indexers={"namespace": namespace_index})
        self.queue = WorkQueue("job")
        self.controller = Controller("job", self.queue, self.reconcile, workers)
        self.pod_control = PodControl(client)
        enqueue_objects(self.jobs, self.queue)
        enqueue_owners(self.pods, self.queue, JOBS)

    async def run(self) -> None:
        await run_with_informers(self.controller, self.jobs, self.pods)

    async def reconcile(self, key: str) -> float | None:
        job = self.jobs.cache.get(key)
        if job is None:
            self.pod_control.forget(key)
            return None
        namespace = job["metadata"]["namespace"]
        pods = {p["metadata"]["name"]: p for p in self.pods.cache.by_index("namespace", namespace)}
        manage = self.pod_control.may_manage(key, pods)
        for action in decide_job(job, pods.values(), replicaset.utc_now(), manage=manage):
            await self.act(key, job, action)
        return None

    async def act(self, key: str, job: Obj, action: Action) -> None:
        control = self.pod_control
        if isinstance(action, CreatePods):
            await control.create_in_batches(key, pod_for_job(job), action.count)
        elif isinstance(action, DeletePods):
            await control.delete(key, job["metadata"]["namespace"], action.names)
        elif isinstance(action, UpdateStatus):
            await control.patch_status(JOBS, job, action.status)
