"""authorization.k8s.io/v1 SelfSubjectAccessReview: "may I?", answered by the authorizer.

A review is created, answered and never stored (`unistack.apiserver.reviews` answers it), so
the kind only allows `create`; `kubectl auth can-i` is its client.
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
    extra={"review": True},
)
