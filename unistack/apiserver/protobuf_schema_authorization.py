"""authorization.k8s.io/v1 protobuf field tables: SelfSubjectAccessReview (`kubectl auth can-i`)
and SelfSubjectRulesReview (`kubectl auth can-i --list`).

Part of the wire contract `protobuf_schema` describes (format and flags are explained there).
"""

from __future__ import annotations

from unistack.apiserver import protobuf_schema

AUTHORIZATION: protobuf_schema.Messages = {
    "authorization/v1.SelfSubjectAccessReview": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "authorization/v1.SelfSubjectAccessReviewSpec"),
        3: ("status", "authorization/v1.SubjectAccessReviewStatus"),
    },
    "authorization/v1.SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "authorization/v1.ResourceAttributes"),
        2: ("nonResourceAttributes", "authorization/v1.NonResourceAttributes"),
    },
    "authorization/v1.ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "authorization/v1.NonResourceAttributes": {
        1: ("path", "string"),
        2: ("verb", "string"),
    },
    "authorization/v1.SubjectAccessReviewStatus": {
        1: ("allowed", "bool", "keep"),
        2: ("reason", "string"),
        3: ("evaluationError", "string"),
        4: ("denied", "bool"),
    },
    "authorization/v1.SelfSubjectRulesReview": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "authorization/v1.SelfSubjectRulesReviewSpec"),
        3: ("status", "authorization/v1.SubjectRulesReviewStatus"),
    },
    "authorization/v1.SelfSubjectRulesReviewSpec": {
        1: ("namespace", "string"),
    },
    "authorization/v1.SubjectRulesReviewStatus": {
        1: ("resourceRules", "authorization/v1.ResourceRule", "repeated"),
        2: ("nonResourceRules", "authorization/v1.NonResourceRule", "repeated"),
        3: ("incomplete", "bool", "keep"),
        4: ("evaluationError", "string"),
    },
    "authorization/v1.ResourceRule": {
        1: ("verbs", "string", "repeated"),
        2: ("apiGroups", "string", "repeated"),
        3: ("resources", "string", "repeated"),
        4: ("resourceNames", "string", "repeated"),
    },
    "authorization/v1.NonResourceRule": {
        1: ("verbs", "string", "repeated"),
        2: ("nonResourceURLs", "string", "repeated"),
    },
}
