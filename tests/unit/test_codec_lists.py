"""List bodies built in parts must concatenate to the same JSON as one joined document."""

from __future__ import annotations

import orjson

from unistack.apiserver import codec
from unistack.apiserver.kinds import core_config


def test_parts_concatenate_to_the_list_document() -> None:
    items = [orjson.dumps({"metadata": {"name": f"c{i}"}}) for i in range(450)]
    parts = codec.list_parts(core_config.CONFIG_MAP, items, 42, "token", 7)
    document = orjson.loads(b"".join(parts))
    assert document["kind"] == "ConfigMapList"
    assert document["metadata"] == {
        "resourceVersion": "42",
        "continue": "token",
        "remainingItemCount": 7,
    }
    assert [i["metadata"]["name"] for i in document["items"]] == [f"c{i}" for i in range(450)]
    assert len(parts) > 3  # never one joined buffer for a large list


def test_empty_list() -> None:
    parts = codec.list_parts(core_config.CONFIG_MAP, [], 3, "", 0)
    assert orjson.loads(b"".join(parts))["items"] == []
