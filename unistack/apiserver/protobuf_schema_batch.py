"""batch/v1 protobuf field tables: Job (`kubectl create job`).

Part of the wire contract `protobuf_schema` describes (format and flags are explained there);
the pod template comes from `protobuf_schema_pod`. Spec fields are Go pointers, so a zero
value sent on the wire is kept.
"""

from __future__ import annotations

from unistack.apiserver import protobuf_schema

BATCH: protobuf_schema.Messages = {
    "batch/v1.Job": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "batch/v1.JobSpec"),
        3: ("status", "batch/v1.JobStatus"),
    },
    "batch/v1.JobSpec": {
        1: ("parallelism", "int32", "keep"),
        2: ("completions", "int32", "keep"),
        3: ("activeDeadlineSeconds", "int64", "keep"),
        4: ("selector", "meta/v1.LabelSelector"),
        5: ("manualSelector", "bool", "keep"),
        6: ("template", "core/v1.PodTemplateSpec"),
        7: ("backoffLimit", "int32", "keep"),
        8: ("ttlSecondsAfterFinished", "int32", "keep"),
        9: ("completionMode", "string", "keep"),
        10: ("suspend", "bool", "keep"),
        12: ("backoffLimitPerIndex", "int32", "keep"),
        13: ("maxFailedIndexes", "int32", "keep"),
        14: ("podReplacementPolicy", "string", "keep"),
        15: ("managedBy", "string", "keep"),
    },
    "batch/v1.JobStatus": {
        1: ("conditions", "batch/v1.JobCondition", "repeated"),
        2: ("startTime", "meta/v1.Time"),
        3: ("completionTime", "meta/v1.Time"),
        4: ("active", "int32"),
        5: ("succeeded", "int32"),
        6: ("failed", "int32"),
        7: ("completedIndexes", "string"),
        9: ("ready", "int32", "keep"),
        10: ("failedIndexes", "string", "keep"),
        11: ("terminating", "int32", "keep"),
    },
    "batch/v1.JobCondition": {
        1: ("type", "string", "keep"),
        2: ("status", "string", "keep"),
        3: ("lastProbeTime", "meta/v1.Time"),
        4: ("lastTransitionTime", "meta/v1.Time"),
        5: ("reason", "string"),
        6: ("message", "string"),
    },
}
