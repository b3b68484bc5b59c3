"""authorization.k8s.io/v1 SelfSubjectAccessReview and SelfSubjectRulesReview: "may I?" and
"what may I do?", answered by the authorizer.

A review is created, answered and never stored (`unistack.apiserver.reviews` answers it), so
the kinds only allow `create`; `kubectl auth can-i` sends the first, `kubectl auth can-i
--list` the second. `extra["review"]` says which question a kind asks.
"""

from __future__ import annotations

from unistack.apiserver.resources import ResourceType

SELF_SUBJECT_ACCESS_REVIEW = ResourceType(
    group="authorization.k8s.io",
    version="v1",
    kind="SelfSubjectAccessReview",
    plural="selfsubjectaccessreviews",
    singular="selfsubjectaccessreview",
    namespaced=False,
    verbs=("create",),
    extra={"review": "access"},
)
SELF_SUBJECT_RULES_REVIEW = ResourceType(
    group="authorization.k8s.io",
    version="v1",
    kind="SelfSubjectRulesReview",
    plural="selfsubjectrulesreviews",
    singular="selfsubjectrulesreview",
    namespaced=False,
    verbs=("create",),
    extra={"review": "rules"},
)
