"""authorization.k8s.io/v1 SelfSubjectAccessReview and SelfSubjectRulesReview: "may I?" and
"what may I do?", answered by the authorizer; authentication.k8s.io/v1 SelfSubjectReview,
"who am I?", and TokenReview, "whose is this token?" (what a component that takes bearer
tokens asks), answered by the authenticator.

A review is created, answered and never stored (`unistack.apiserver.reviews` answers it), so
the kinds only allow `create`; `kubectl auth can-i` sends the first, `kubectl auth can-i
--list` the second, `kubectl auth whoami` the third. `extra["review"]` says which question a
kind asks.
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
SELF_SUBJECT_REVIEW = ResourceType(
    group="authentication.k8s.io",
    version="v1",
    kind="SelfSubjectReview",
    plural="selfsubjectreviews",
    singular="selfsubjectreview",
    namespaced=False,
    verbs=("create",),
    extra={"review": "self"},
)
TOKEN_REVIEW = ResourceType(
    group="authentication.k8s.io",
    version="v1",
    kind="TokenReview",
    plural="tokenreviews",
    singular="tokenreview",
    namespaced=False,
    verbs=("create",),
    extra={"review": "token"},
)
