"""Request bodies decoded as kube-apiserver decodes them: JSON values only, or a 400."""

from __future__ import annotations

import orjson
import pytest

from unistack.apiserver import codec
from unistack.apiserver.errors import ApiError

APPLY = "application/apply-patch+yaml"


def test_apply_body_may_be_yaml_or_json() -> None:
    yaml_body = (
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  when: 2024-01-01\n"
    )
    assert codec.decode_body(yaml_body, APPLY) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"when": "2024-01-01"},
    }
    assert codec.decode_body(b'{"kind": "ConfigMap"}', APPLY) == {"kind": "ConfigMap"}


@pytest.mark.parametrize("body", [b"kind: [unclosed", b"a: 1\n---\nb: 2\n", b"a: !!binary AAAA\n"])
def test_apply_body_that_is_not_one_json_document_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        codec.decode_body(body, APPLY)
    assert caught.value.code == 400
    assert caught.value.message.startswith("error decoding YAML: ")


@pytest.mark.parametrize("content_type", ["application/yaml", APPLY])
def test_yaml_keys_and_values_become_what_json_can_carry(content_type: str) -> None:
    body = b"data:\n  8080: port\n  on: yes\n  1.5: x\nbig: 123456789012345678901234567890\n"
    decoded = codec.decode_body(body, content_type)
    assert decoded == {
        "data": {"8080": "port", "true": True, "1.5": "x"},
        "big": 1.2345678901234568e29,
    }
    orjson.dumps(decoded)  # the store can encode whatever decoding lets through


@pytest.mark.parametrize("body", [b"? [a, b]\n: x\n", b"~: x\n", b"s: !!set {a, b}\n"])
def test_yaml_without_a_json_form_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        codec.decode_body(body, "application/yaml")
    assert caught.value.code == 400
