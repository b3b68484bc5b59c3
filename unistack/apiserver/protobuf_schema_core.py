"""core/v1 protobuf field tables: Namespace, ConfigMap, Secret, ServiceAccount, Service.

Part of the wire contract `protobuf_schema` describes (format and flags are explained there);
the pod template these kinds do not use lives in `protobuf_schema_pod`.
"""

from __future__ import annotations

from unistack.apiserver import protobuf_schema

CORE: protobuf_schema.Messages = {
    "core/v1.Namespace": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "core/v1.NamespaceSpec"),
        3: ("status", "core/v1.NamespaceStatus"),
    },
    "core/v1.NamespaceSpec": {
        1: ("finalizers", "string", "repeated"),
    },
    "core/v1.NamespaceStatus": {
        1: ("phase", "string"),
        2: ("conditions", "core/v1.NamespaceCondition", "repeated"),
    },
    "core/v1.NamespaceCondition": {
        1: ("type", "string", "keep"),
        2: ("status", "string", "keep"),
        4: ("lastTransitionTime", "meta/v1.Time"),
        5: ("reason", "string"),
        6: ("message", "string"),
    },
    "core/v1.ConfigMap": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("data", "string", "map"),
        3: ("binaryData", "bytes", "map"),
        4: ("immutable", "bool", "keep"),
    },
    "core/v1.Secret": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("data", "bytes", "map"),
        3: ("type", "string"),
        4: ("stringData", "string", "map"),
        5: ("immutable", "bool", "keep"),
    },
    "core/v1.ServiceAccount": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("secrets", "core/v1.ObjectReference", "repeated"),
        3: ("imagePullSecrets", "core/v1.LocalObjectReference", "repeated"),
        4: ("automountServiceAccountToken", "bool", "keep"),
    },
    "core/v1.ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "core/v1.LocalObjectReference": {
        1: ("name", "string"),
    },
    "core/v1.Service": {
        1: ("metadata", "meta/v1.ObjectMeta"),
        2: ("spec", "core/v1.ServiceSpec"),
        3: ("status", "core/v1.ServiceStatus"),
    },
    "core/v1.ServiceSpec": {
        1: ("ports", "core/v1.ServicePort", "repeated"),
        2: ("selector", "string", "map"),
        3: ("clusterIP", "string"),
        4: ("type", "string"),
        5: ("externalIPs", "string", "repeated"),
        7: ("sessionAffinity", "string"),
        8: ("loadBalancerIP", "string"),
        9: ("loadBalancerSourceRanges", "string", "repeated"),
        10: ("externalName", "string"),
        11: ("externalTrafficPolicy", "string"),
        12: ("healthCheckNodePort", "int32"),
        13: ("publishNotReadyAddresses", "bool"),
        14: ("sessionAffinityConfig", "core/v1.SessionAffinityConfig"),
        17: ("ipFamilyPolicy", "string", "keep"),
        18: ("clusterIPs", "string", "repeated"),
        19: ("ipFamilies", "string", "repeated"),
        20: ("allocateLoadBalancerNodePorts", "bool", "keep"),
        21: ("loadBalancerClass", "string", "keep"),
        22: ("internalTrafficPolicy", "string", "keep"),
        23: ("trafficDistribution", "string", "keep"),
    },
    "core/v1.ServicePort": {
        1: ("name", "string"),
        2: ("protocol", "string"),
        3: ("port", "int32", "keep"),
        4: ("targetPort", "intstr.IntOrString"),
        5: ("nodePort", "int32"),
        6: ("appProtocol", "string", "keep"),
    },
    "core/v1.ServiceStatus": {
        1: ("loadBalancer", "core/v1.LoadBalancerStatus"),
        2: ("conditions", "meta/v1.Condition", "repeated"),
    },
    "core/v1.LoadBalancerStatus": {
        1: ("ingress", "core/v1.LoadBalancerIngress", "repeated"),
    },
    "core/v1.LoadBalancerIngress": {
        1: ("ip", "string"),
        2: ("hostname", "string"),
        3: ("ipMode", "string", "keep"),
        4: ("ports", "core/v1.PortStatus", "repeated"),
    },
    "core/v1.PortStatus": {
        1: ("port", "int32", "keep"),
        2: ("protocol", "string", "keep"),
        3: ("error", "string", "keep"),
    },
    "core/v1.SessionAffinityConfig": {
        1: ("clientIP", "core/v1.ClientIPConfig"),
    },
    "core/v1.ClientIPConfig": {
        1: ("timeoutSeconds", "int32", "keep"),
    },
}
