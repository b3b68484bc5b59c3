"""apps/v1 protobuf field tables: Deployment, its spec, strategy and status.

Part of the wire contract `protobuf_schema` describes (format and flags are explained there);
the pod template comes from `protobuf_schema_pod`.
"""

from __future__ import annotations

from unistack.apiserver import protobuf_schema

APPS: protobuf_schema.Messages = {
    "apps/v1.Deployment": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "apps/v1.DeploymentSpec"),
        3: ("status", "apps/v1.DeploymentStatus"),
    },
    "apps/v1.DeploymentSpec": {
        1: ("replicas", "int32", "keep"),
        2: ("selector", "meta/v1.LabelSelector"),
        3: ("template", "core/v1.PodTemplateSpec"),
        4: ("strategy", "apps/v1.DeploymentStrategy"),
        5: ("minReadySeconds", "int32"),
        6: ("revisionHistoryLimit", "int32", "keep"),
        7: ("paused", "bool"),
        9: ("progressDeadlineSeconds", "int32", "keep"),
    },
    "apps/v1.DeploymentStrategy": {
        1: ("type", "string"),
        2: ("rollingUpdate", "apps/v1.RollingUpdateDeployment"),
    },
    "apps/v1.DeploymentStatus": {
        1: ("observedGeneration", "int64"),
        2: ("replicas", "int32"),
        3: ("updatedReplicas", "int32"),
        4: ("availableReplicas", "int32"),
        5: ("unavailableReplicas", "int32"),
        6: ("conditions", "apps/v1.DeploymentCondition", "repeated"),
        7: ("readyReplicas", "int32"),
        8: ("collisionCount", "int32", "keep"),
        9: ("terminatingReplicas", "int32", "keep"),
    },
    "apps/v1.DeploymentCondition": {
        1: ("type", "string", "keep"),
        2: ("status", "string", "keep"),
        4: ("reason", "string"),
        5: ("message", "string"),
        6: ("lastUpdateTime", "meta/v1.Time"),
        7: ("lastTransitionTime", "meta/v1.Time"),
    },
    "apps/v1.RollingUpdateDeployment": {
        1: ("maxUnavailable", "intstr.IntOrString"),
        2: ("maxSurge", "intstr.IntOrString"),
    },
}
