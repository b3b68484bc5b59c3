"""protobuf.decode: Kubernetes protobuf bodies become the JSON objects kubectl would have sent.

The first tests replay bodies captured from kubectl 1.32 (`kubectl create ...` against a
listener) and expect exactly what `kubectl create ... --dry-run=client -o json` prints for the
same command. The rest build bodies with the small encoder below.
"""

from __future__ import annotations

from typing import Any

import pytest

from unistack.apiserver import errors, protobuf, protobuf_schema

# Captured from kubectl 1.32.

CREATE_NAMESPACE = bytes.fromhex(
    "6b3873000a0f0a02763112094e616d657370616365121c0a140a0464656d6f12001a0022002a0032"
    "003800420012001a020a001a002200"
)
CREATE_CONFIGMAP = bytes.fromhex(
    "6b3873000a0f0a0276311209436f6e6669674d6170121b0a110a016312001a0022002a0032003800"
    "420012060a01611201621a002200"
)
CREATE_SECRET = bytes.fromhex(
    "6b3873000a0c0a0276311206536563726574121d0a110a017312001a0022002a0032003800420012"
    "060a016b1201761a001a002200"
)
CREATE_DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a1f0a0377656212001a"
    "0022002a003200380042005a0a0a0361707012037765621286010802120c0a0a0a03617070120377"
    "65621a6c0a1c0a0012001a0022002a003200380042005a0a0a036170701203776562124c122e0a05"
    "6e67696e7812056e67696e782a00320a0a001000185022002a0042006a0072008001008801009001"
    "00a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a0028003800"
    "1a0c0800100018002000280038001a002200"
)
CREATE_SERVICE_CLUSTERIP = bytes.fromhex(
    "6b3873000a0d0a02763112075365727669636512690a1f0a0373766312001a0022002a0032003800"
    "42005a0a0a03617070120373766312420a1b0a0738302d3830383012035443501850220708001090"
    "3f1a002800120a0a0361707012037376631a002209436c757374657249503a00420052005a006000"
    "68001a020a001a002200"
)


def test_create_namespace() -> None:
    assert protobuf.decode(CREATE_NAMESPACE) == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "demo", "creationTimestamp": None},
        "spec": {},
        "status": {},
    }


def test_create_configmap_from_literal() -> None:
    assert protobuf.decode(CREATE_CONFIGMAP) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "c", "creationTimestamp": None},
        "data": {"a": "b"},
    }


def test_create_secret_generic_has_base64_data() -> None:
    assert protobuf.decode(CREATE_SECRET) == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "s", "creationTimestamp": None},
        "data": {"k": "dg=="},
    }


def test_create_deployment_with_replicas_and_port() -> None:
    labels = {"app": "web"}
    assert protobuf.decode(CREATE_DEPLOYMENT) == {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": None, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {},
                        }
                    ]
                },
            },
            "strategy": {},
        },
        "status": {},
    }


def test_create_service_clusterip_has_int_target_port() -> None:
    assert protobuf.decode(CREATE_SERVICE_CLUSTERIP) == {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "svc", "creationTimestamp": None, "labels": {"app": "svc"}},
        "spec": {
            "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"app": "svc"},
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


# A minimal encoder: a field is (number, value); ints are varints, bytes and str are
# length-delimited, floats are 64-bit.

Fields = list[tuple[int, Any]]


def varint(number: int) -> bytes:
    number &= (1 << 64) - 1
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def encode(fields: Fields) -> bytes:
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool | int):
            out += varint(number << 3) + varint(int(value))
        else:
            data = value.encode() if isinstance(value, str) else value
            out += varint(number << 3 | 2) + varint(len(data)) + data
    return bytes(out)


def entry(key: str, value: Any) -> bytes:
    return encode([(1, key), (2, value)])


def body(api_version: str, kind: str, raw: bytes, *, encoding: str = "") -> bytes:
    type_meta = encode([(1, api_version), (2, kind)])
    return protobuf.MAGIC + encode([(1, type_meta), (2, raw), (3, encoding), (4, "")])


def decode_spec(pod_spec: Fields) -> dict[str, Any]:
    """A Deployment with this pod spec, decoded; returns the decoded pod spec."""
    template = encode([(2, encode(pod_spec))])
    raw = encode([(2, encode([(3, template)]))])
    obj = protobuf.decode(body("apps/v1", "Deployment", raw))
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_pointer_zeros_are_kept_and_plain_zeros_dropped() -> None:
    raw = encode([(2, encode([(1, 0), (7, False)]))])  # replicas: 0 (*int32), paused: false
    assert protobuf.decode(body("apps/v1", "Deployment", raw))["spec"] == {"replicas": 0}
    spec = decode_spec([(11, False), (21, False), (10, "")])  # hostNetwork, automount..., nodeName
    assert spec == {"automountServiceAccountToken": False}


def test_names_without_omitempty_survive_empty() -> None:
    spec = decode_spec([(2, encode([(1, ""), (2, "nginx")]))])
    assert spec == {"containers": [{"name": "", "image": "nginx"}]}


def test_int_or_string_takes_the_form_its_type_says() -> None:
    rolling = encode([(1, encode([(1, 1), (3, "25%")])), (2, encode([(1, 0), (2, 2)]))])
    strategy = encode([(1, "RollingUpdate"), (2, rolling)])
    raw = encode([(2, encode([(4, strategy)]))])
    decoded = protobuf.decode(body("apps/v1", "Deployment", raw))
    assert decoded["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2},
    }


def test_times_are_rfc3339_and_the_zero_time_is_null() -> None:
    meta = encode([(8, encode([(1, 1700000000), (2, 5)])), (9, b"")])
    decoded = protobuf.decode(body("v1", "ConfigMap", encode([(1, meta)])))
    assert decoded["metadata"] == {
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "deletionTimestamp": None,
    }


def test_resources_are_quantity_strings() -> None:
    resources = encode([(1, entry("cpu", encode([(1, "500m")]))), (2, entry("memory", b""))])
    spec = decode_spec([(2, encode([(1, "c"), (8, resources)]))])
    assert spec["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"},
        "requests": {"memory": "0"},
    }


def test_env_references_and_inline_names() -> None:
    key_ref = encode([(1, encode([(1, "cm")])), (2, "k"), (3, False)])
    env = encode([(1, "A"), (3, encode([(3, key_ref)]))])
    field_ref = encode([(1, "B"), (3, encode([(1, encode([(2, "metadata.name")]))]))])
    spec = decode_spec([(2, encode([(1, "c"), (7, env), (7, field_ref)]))])
    assert spec["containers"][0]["env"] == [
        {
            "name": "A",
            "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": False}},
        },
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def test_volumes_inline_their_source() -> None:
    config_map = encode([(1, encode([(1, "cm")])), (3, 420)])
    volumes = [
        (1, encode([(1, "a"), (2, encode([(2, b"")]))])),
        (1, encode([(1, "b"), (2, encode([(19, config_map)]))])),
        (1, encode([(1, "c"), (2, encode([(6, encode([(1, "s")]))]))])),
        (1, encode([(1, "d"), (2, encode([(1, encode([(1, "/x"), (2, "")]))]))])),
        (1, encode([(1, "e"), (2, encode([(10, encode([(1, "pvc")]))]))])),
    ]
    assert decode_spec(volumes)["volumes"] == [
        {"name": "a", "emptyDir": {}},
        {"name": "b", "configMap": {"name": "cm", "defaultMode": 420}},
        {"name": "c", "secret": {"secretName": "s"}},
        {"name": "d", "hostPath": {"path": "/x", "type": ""}},
        {"name": "e", "persistentVolumeClaim": {"claimName": "pvc"}},
    ]


def test_probe_handler_is_inline_and_ports_may_be_named() -> None:
    http_get = encode([(1, "/healthz"), (2, encode([(1, 1), (3, "http")]))])
    probe = encode([(1, encode([(2, http_get)])), (4, 10)])
    spec = decode_spec([(2, encode([(1, "c"), (10, probe)]))])
    assert spec["containers"][0]["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 10,
    }


def test_negative_numbers_and_packed_lists() -> None:
    security = encode([(2, -1), (4, varint(5) + varint(6)), (4, 7)])
    spec = decode_spec([(14, security), (22, encode([(1, "k"), (5, -30)]))])
    assert spec["securityContext"] == {"runAsUser": -1, "supplementalGroups": [5, 6, 7]}
    assert spec["tolerations"] == [{"key": "k", "tolerationSeconds": -30}]


def test_managed_fields_hold_json() -> None:
    managed = encode([(1, "kubectl"), (6, "FieldsV1"), (7, encode([(1, b'{"f:data":{}}')]))])
    decoded = protobuf.decode(body("v1", "Secret", encode([(1, encode([(17, managed)]))])))
    assert decoded["metadata"]["managedFields"] == [
        {"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}
    ]


@pytest.mark.parametrize("api_version", ["v1", "apps/v1", "meta.k8s.io/v1"])
def test_delete_options_under_any_group_version(api_version: str) -> None:
    raw = encode([(1, 0), (4, "Foreground"), (5, "All")])
    assert protobuf.decode(body(api_version, "DeleteOptions", raw)) == {
        "kind": "DeleteOptions",
        "apiVersion": api_version,
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    }


def test_zero_fields_the_tables_leave_out_are_ignored() -> None:
    spec = decode_spec([(18, b""), (99, 0), (2, encode([(1, "c")]))])
    assert spec == {"containers": [{"name": "c"}]}


def test_set_fields_the_tables_leave_out_are_refused() -> None:
    with pytest.raises(errors.ApiError) as caught:
        decode_spec([(18, encode([(1, b"x")]))])  # affinity
    assert caught.value.code == 400
    assert "field 18 of core/v1.PodSpec at spec.template.spec" in caught.value.message


def test_unknown_kinds_are_unsupported_media() -> None:
    with pytest.raises(errors.ApiError) as caught:
        protobuf.decode(body("batch/v1", "CronJob", b""))
    assert caught.value.code == 415
    assert "kind=CronJob, apiVersion=batch/v1" in caught.value.message


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b'{"kind": "Namespace"}', "magic number"),
        (protobuf.MAGIC + b"\x0a\x05\x0a", "runs past the end"),
        (protobuf.MAGIC + b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (protobuf.MAGIC + b"\x08", "cut short"),
        (protobuf.MAGIC + b"\x0b", "wire type 3"),
        (protobuf.MAGIC + b"\x00\x00", "number 0"),
        (protobuf.MAGIC + b"\x08\x01", "typeMeta has wire type 0"),
        (body("v1", "Secret", b"", encoding="gzip"), "content encoding 'gzip'"),
        (body("", "", b""), "does not say what kind"),
        (body("v1", "Secret", encode([(1, encode([(1, 7)]))])), "metadata.name has wire type 0"),
    ],
)
def test_malformed_bodies_are_bad_requests(data: bytes, detail: str) -> None:
    with pytest.raises(errors.ApiError) as caught:
        protobuf.decode(data)
    assert caught.value.code == 400
    assert detail in caught.value.message


def test_schema_refuses_references_to_undeclared_messages() -> None:
    table: protobuf_schema.Messages = {"x/v1.A": {1: ("b", "x/v1.B")}}
    with pytest.raises(ValueError, match=r"x/v1\.A field 1 refers to undeclared x/v1\.B"):
        protobuf_schema.compile_schema(table)
