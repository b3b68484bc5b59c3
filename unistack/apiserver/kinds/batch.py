"""The batch/v1 Job: its `kubectl get` columns, defaults and validation.

Columns follow upstream's printJob (Status, Completions, Duration, Age; wide adds the
template's containers, images and the selector). Defaults follow SetDefaults_Job plus
PrepareForCreate's generated selector: unless `spec.manualSelector` is true, a Job selects its
pods by `batch.kubernetes.io/controller-uid=<uid>`, and its template carries that label, the
legacy `controller-uid` and the `job-name` labels. Validation follows pkg/apis/batch/validation
for the common fields; pod templates are checked by `pod_validation` through `apps_validation`'s
template checks. Neighbours: `apps` (the other workloads), `unistack.kube.job` (the controller).
"""

from __future__ import annotations

from datetime import UTC, datetime

from unistack.apiserver import tables
from unistack.apiserver.errors import FieldError, invalid_field, required_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.apps_validation import check_selector_unchanged
from unistack.apiserver.kinds.checks import check_enum, check_nonnegative
from unistack.apiserver.kinds.objects import Obj, dict_of, dicts_in, dig, ensure_dict, set_default
from unistack.apiserver.kinds.pod_defaults import default_pod_spec
from unistack.apiserver.kinds.pod_validation import check_pod_spec
from unistack.apiserver.resources import Column, ResourceType
from unistack.apiserver.selectors import label_selector_from_spec
from unistack.apiserver.validation import validate_label_selector_spec, validate_labels

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID = "controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME = "job-name"
RESTART_POLICIES = ("OnFailure", "Never")
COMPLETION_MODES = ("NonIndexed", "Indexed")
SELECTOR_MISMATCH = "`selector` does not match template `labels`"


# --- defaults ---------------------------------------------------------------------------------


def default_job(obj: Obj) -> None:
    spec = ensure_dict(obj, "spec")
    if spec is None:
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    set_default(spec, "parallelism", 1)
    set_default(spec, "backoffLimit", 6)
    set_default(spec, "completionMode", "NonIndexed")
    set_default(spec, "suspend", False)
    template = ensure_dict(spec, "template")
    pod_spec = ensure_dict(template, "spec") if template is not None else None
    if pod_spec is not None:
        default_pod_spec(pod_spec)
    if spec.get("manualSelector") is not True and template is not None:
        _generate_selector(obj, spec, template)


def _generate_selector(obj: Obj, spec: Obj, template: Obj) -> None:
    """PrepareForCreate's generateSelector: label the template and select by the Job's uid."""
    meta = dict_of(obj.get("metadata"))
    uid, name = meta.get("uid"), meta.get("name")
    if not uid:
        return
    template_meta = ensure_dict(template, "metadata")
    labels = ensure_dict(template_meta, "labels") if template_meta is not None else None
    if labels is None:
        return
    for key, value in (
        (LEGACY_CONTROLLER_UID, uid), (CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name), (JOB_NAME, name),
    ):  # fmt: skip
        if value:
            labels.setdefault(key, value)
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}


# --- validation -------------------------------------------------------------------------------


def validate_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(obj.get("spec"))
    errs = [
        e
        for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds")
        for e in check_nonnegative(f"spec.{f}", spec.get(f))
    ]
    errs += check_enum("spec.completionMode", spec.get("completionMode"), COMPLETION_MODES)
    errs += _check_selector(spec)
    errs += _check_job_template(spec)
    return errs + check_selector_unchanged(obj, old)


def _check_selector(spec: Obj) -> list[FieldError]:
    selector = spec.get("selector")
    if selector is None:
        return [required_field("spec.selector")]
    errs = validate_label_selector_spec(selector, "spec.selector")
    labels = dig(spec, "template", "metadata", "labels")
    if not errs and not _selects(selector, labels):
        errs.append(invalid_field("spec.template.metadata.labels", labels, SELECTOR_MISMATCH))
    return errs


def _selects(selector: object, labels: object) -> bool:
    parsed = dict_of(selector)
    if not parsed.get("matchLabels") and not parsed.get("matchExpressions"):
        return False
    return label_selector_from_spec(parsed).matches(dict_of(labels))


def _check_job_template(spec: Obj) -> list[FieldError]:
    template = spec.get("template")
    if template is None:
        return [required_field("spec.template")]
    labels = dig(template, "metadata", "labels")
    errs = validate_labels(labels, "spec.template.metadata.labels")
    pod_spec = dict_of(template).get("spec")
    errs += check_pod_spec(pod_spec, "spec.template.spec")
    if dig(pod_spec, "restartPolicy") not in RESTART_POLICIES:
        detail = "valid values: " + ", ".join(f'"{p}"' for p in RESTART_POLICIES)
        errs.append(required_field("spec.template.spec.restartPolicy", detail))
    return errs


# --- columns ----------------------------------------------------------------------------------


def _condition_true(obj: Obj, kind: str) -> bool:
    conditions = dicts_in(dig(obj, "status", "conditions"))
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def job_status_word(obj: Obj) -> str:
    """printJob's Status: Complete, Failed, Terminating, Suspended or Running."""
    for word in ("Complete", "Failed"):
        if _condition_true(obj, word):
            return word
    if dig(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    if _condition_true(obj, "FailureTarget"):
        return "FailureTarget"
    if _condition_true(obj, "Suspended") or dig(obj, "spec", "suspend") is True:
        return "Suspended"
    return "Running"


def job_completions(obj: Obj) -> str:
    """printJob's Completions: `succeeded/completions`, or `succeeded/1 of parallelism`."""
    succeeded = cells.count_at("status", "succeeded")(obj)
    completions = dig(obj, "spec", "completions")
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = cells.count_at("spec", "parallelism")(obj)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(obj: Obj, now: datetime | None = None) -> str:
    """Time from startTime to completionTime (or to now while running); "" before it starts."""
    start = cells.parse_time(dig(obj, "status", "startTime"))
    if start is None:
        return ""
    end = cells.parse_time(dig(obj, "status", "completionTime"))
    end = end or now or datetime.now(UTC)
    return tables.human_duration((end - start).total_seconds())


def _template_spec(obj: Obj) -> Obj:
    return dict_of(dig(obj, "spec", "template", "spec"))


JOB_COLUMNS = (
    Column("Status", job_status_word, description="Status of the job."),
    Column("Completions", job_completions, description="The completion status of the job."),
    Column("Duration", job_duration, description="Time required to complete the job."),
    cells.AGE_COLUMN,
    Column(
        "Containers",
        lambda obj: cells.container_names(_template_spec(obj)),
        priority=1,
        description="Names of each container in the template.",
    ),
    Column(
        "Images",
        lambda obj: cells.container_images(_template_spec(obj)),
        priority=1,
        description="Images referenced by each container in the template.",
    ),
    Column(
        "Selector",
        lambda obj: cells.format_selector(dig(obj, "spec", "selector"), empty=cells.NONE),
        priority=1,
        description="Label selector for the pods.",
    ),
)

JOB = ResourceType(
    tracks_generation=True,
    group="batch",
    version="v1",
    kind="Job",
    plural="jobs",
    singular="job",
    namespaced=True,
    categories=("all",),
    status_subresource=True,
    columns=JOB_COLUMNS,
    defaulter=default_job,
    validator=validate_job,
)
