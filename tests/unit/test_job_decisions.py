"""The Job controller's pure decisions (`unistack.kube.job.decide_job`) and the Job kind."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from unistack.apiserver.kinds import batch
from unistack.kube.job import decide_job, pod_for_job
from unistack.kube.replicaset import CreatePods, DeletePods, UpdateStatus

Obj = dict[str, Any]
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SELECTOR = {"matchLabels": {batch.CONTROLLER_UID: "u1"}}


def job(**spec: Any) -> Obj:
    template = {
        "metadata": {"labels": {batch.CONTROLLER_UID: "u1"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    }
    base = {"completions": 1, "parallelism": 1, "backoffLimit": 6, "selector": SELECTOR}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
        "spec": base | {"template": template} | spec,
    }


def pod(name: str, phase: str = "Running", owner: str = "u1") -> Obj:
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": owner, "controller": True}
    meta = {"name": name, "labels": {batch.CONTROLLER_UID: "u1"}, "ownerReferences": [ref]}
    return {"metadata": meta, "status": {"phase": phase}}


def status_of(actions: list[Any]) -> Obj:
    return next(a.status for a in actions if isinstance(a, UpdateStatus))


def test_a_new_job_creates_parallelism_pods_bounded_by_completions() -> None:
    assert CreatePods(2) in decide_job(job(completions=2, parallelism=3), [], NOW)
    assert CreatePods(1) in decide_job(
        job(completions=3, parallelism=3), [pod("a", "Succeeded"), pod("b", "Succeeded")], NOW
    )


def test_a_running_job_reports_its_counts_and_start_time() -> None:
    actions = decide_job(job(completions=2), [pod("a", "Succeeded"), pod("b")], NOW)
    status = status_of(actions)
    assert (status["active"], status["succeeded"], status["failed"]) == (1, 1, 0)
    assert status["startTime"] == "2026-01-01T00:00:00Z"
    assert not any(isinstance(a, CreatePods) for a in actions)


def test_enough_successes_complete_the_job() -> None:
    status = status_of(
        decide_job(job(completions=2), [pod("a", "Succeeded"), pod("b", "Succeeded")], NOW)
    )
    assert [c["type"] for c in status["conditions"]] == ["Complete"]
    assert status["completionTime"] == "2026-01-01T00:00:00Z"


def test_too_many_failures_fail_the_job_and_delete_active_pods() -> None:
    pods = [pod("a", "Failed"), pod("b", "Failed"), pod("c")]
    actions = decide_job(job(backoffLimit=1), pods, NOW)
    assert DeletePods(("c",)) in actions
    condition = status_of(actions)["conditions"][0]
    assert (condition["type"], condition["reason"]) == ("Failed", "BackoffLimitExceeded")


def test_a_failure_within_the_backoff_limit_is_replaced() -> None:
    assert CreatePods(1) in decide_job(job(backoffLimit=1), [pod("a", "Failed")], NOW)


def test_suspend_deletes_active_pods() -> None:
    assert DeletePods(("a",)) in decide_job(job(suspend=True), [pod("a")], NOW)


def test_a_finished_job_does_nothing_and_foreign_pods_do_not_count() -> None:
    done = job() | {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert decide_job(done, [], NOW) == []
    assert CreatePods(1) in decide_job(job(), [pod("x", "Succeeded", owner="other")], NOW)


def test_pods_carry_the_job_name_labels_and_a_controller_reference() -> None:
    body = pod_for_job(job())
    assert body["metadata"]["generateName"] == "pi-"
    assert body["metadata"]["labels"]["job-name"] == "pi"
    assert body["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
    assert body["metadata"]["ownerReferences"][0]["controller"] is True


# --- the kind ---------------------------------------------------------------------------------


def test_defaults_generate_the_selector_from_the_uid() -> None:
    obj = job()
    del obj["spec"]["selector"], obj["spec"]["completions"], obj["spec"]["parallelism"]
    obj["spec"]["template"]["metadata"]["labels"] = {}
    batch.default_job(obj)
    spec = obj["spec"]
    assert (spec["completions"], spec["parallelism"], spec["completionMode"]) == (
        1,
        1,
        "NonIndexed",
    )
    assert spec["selector"] == SELECTOR
    assert spec["template"]["metadata"]["labels"]["controller-uid"] == "u1"
    assert spec["template"]["metadata"]["labels"]["job-name"] == "pi"
    assert batch.validate_job(obj, None) == []


@pytest.mark.parametrize("policy", [None, "Always"])
def test_restart_policy_must_be_never_or_on_failure(policy: str | None) -> None:
    obj = job()
    obj["spec"]["template"]["spec"]["restartPolicy"] = policy
    batch.default_job(obj)
    errs = batch.validate_job(obj, None)
    assert [(e.field, e.detail) for e in errs] == [
        ("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
    ]


def test_columns_show_status_completions_and_duration() -> None:
    obj = job(completions=2) | {
        "status": {
            "succeeded": 1,
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:00:30Z",
        }
    }
    assert batch.job_status_word(obj) == "Running"
    assert batch.job_completions(obj) == "1/2"
    assert batch.job_duration(obj) == "30s"
