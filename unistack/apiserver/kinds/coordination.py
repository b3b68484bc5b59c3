"""coordination.k8s.io/v1 Lease: the leader-election and node-heartbeat lock.

Validation checks the spec's types and ranges as upstream's ValidateLeaseSpec does; the
table shows the HOLDER as `kubectl get leases` does.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver.errors import FieldError, forbidden_field, invalid_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_nonnegative, check_positive, type_error
from unistack.apiserver.kinds.objects import Obj, dict_of
from unistack.apiserver.resources import Column, ResourceType

_STRATEGIES = ("OldestEmulationVersion",)


def validate_lease(lease: Obj, old: Obj | None) -> list[FieldError]:
    spec = dict_of(lease.get("spec"))
    errs = check_positive("spec.leaseDurationSeconds", spec.get("leaseDurationSeconds"))
    errs += check_nonnegative("spec.leaseTransitions", spec.get("leaseTransitions"))
    for key in ("holderIdentity", "strategy", "preferredHolder"):
        errs += _check_string(f"spec.{key}", spec.get(key))
    for key in ("acquireTime", "renewTime"):
        errs += _check_micro_time(f"spec.{key}", spec.get(key))
    strategy = spec.get("strategy")
    if strategy not in (None, "", *_STRATEGIES):
        detail = f"must be one of {', '.join(_STRATEGIES)}"
        errs.append(invalid_field("spec.strategy", strategy, detail))
    if spec.get("preferredHolder") and not strategy:
        detail = "may only be specified if `strategy` is defined"
        errs.append(forbidden_field("spec.preferredHolder", detail))
    return errs


def _check_string(field: str, value: Any) -> list[FieldError]:
    return [] if value is None or isinstance(value, str) else [type_error(field, value, "string")]


def _check_micro_time(field: str, value: Any) -> list[FieldError]:
    if value is None:
        return []
    if cells.parse_time(value) is None:
        return [invalid_field(field, value, "must be an RFC 3339 timestamp")]
    return []


LEASE = ResourceType(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    singular="lease",
    namespaced=True,
    columns=(
        Column("Holder", cells.text_at("spec", "holderIdentity"), description="The holder."),
        cells.AGE_COLUMN,
    ),
    validator=validate_lease,
)
