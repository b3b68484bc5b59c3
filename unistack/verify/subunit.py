"""Reading Tempest's results: the subunit v2 stream decoded into one outcome per test, and
summarised per service.

`decode_subunit` reads the packet header, test id and status of the documented v2 format,
CRC-checked, skipping bytes that are not packets. It is written here rather than taken from
the `python-subunit` library because that library lives in Tempest's own virtualenv, not in
unistack's, and its `subunit2csv` tool crashed on attachments and stray output. A class that
fails or skips in `setUpClass` is reported once by Tempest; `final_outcomes` gives its tests
that outcome, so the counts are per test.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

OUTCOME_NAMES = ("passed", "failed", "skipped")
SUBUNIT_SIGNATURE = 0xB3
SUBUNIT_VERSION = 0x2
SUBUNIT_FLAG_TEST_ID = 0x0800
SUBUNIT_FLAG_TIMESTAMP = 0x0200
SUBUNIT_STATUSES = (None, "exists", "inprogress", "success", "uxsuccess", "skip", "fail", "xfail")


@dataclass(frozen=True)
class SubunitEvent:
    test_id: str | None
    status: str | None  # None: the packet carries no status (e.g. an attachment)


def decode_subunit(stream: bytes) -> Iterator[SubunitEvent]:
    """The events of a subunit v2 byte stream. Bytes that are not a packet with a good CRC
    (text a test process printed) are skipped, as subunit's own reader passes them on."""
    position = stream.find(SUBUNIT_SIGNATURE)
    while position >= 0:
        decoded = _packet_at(stream, position)
        if decoded is None:
            position = stream.find(SUBUNIT_SIGNATURE, position + 1)
            continue
        event, end = decoded
        yield event
        position = stream.find(SUBUNIT_SIGNATURE, end)


def _packet_at(stream: bytes, start: int) -> tuple[SubunitEvent, int] | None:
    """Signature, 16 flag bits, the whole packet's length (varint), fields, CRC-32."""
    if start + 8 > len(stream):
        return None
    flags = int.from_bytes(stream[start + 1 : start + 3], "big")
    length, position = _varint(stream, start + 3)
    end = start + length
    if flags >> 12 != SUBUNIT_VERSION or length < 8 or end > len(stream):
        return None
    if zlib.crc32(stream[start : end - 4]) != int.from_bytes(stream[end - 4 : end], "big"):
        return None
    if flags & SUBUNIT_FLAG_TIMESTAMP:
        position = _varint(stream, position + 4)[1]  # 32-bit seconds, varint nanoseconds
    test_id = None
    if flags & SUBUNIT_FLAG_TEST_ID:
        size, position = _varint(stream, position)
        test_id = stream[position : position + size].decode("utf-8", "replace")
    return SubunitEvent(test_id, SUBUNIT_STATUSES[flags & 0x7]), end


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """A subunit number: the top two bits of the first byte say 1-4 bytes. Returns the value
    and the position after it."""
    size = (data[position] >> 6) + 1
    value = int.from_bytes(data[position : position + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, position + size


OUTCOMES = {
    "success": "passed",
    "xfail": "passed",
    "skip": "skipped",
    "fail": "failed",
    "uxsuccess": "failed",
}


CLASS_SETUP = re.compile(r"^setUpClass \((?P<test_class>.+)\)$")


def final_outcomes(events: Iterable[SubunitEvent]) -> dict[str, str]:
    """Test id -> passed/failed/skipped, from the last status each test reported.

    A class that fails or is skipped in `setUpClass` reports once, under the id
    `setUpClass (module.Class)`, and its tests only as listed (`exists`); they inherit the
    class's outcome, which then stands for them instead of the setUpClass id.
    """
    outcomes: dict[str, str] = {}
    listed: list[str] = []
    for event in events:
        if event.test_id and event.status == "exists":
            listed.append(event.test_id)
        elif event.test_id and event.status in OUTCOMES:
            outcomes[event.test_id] = OUTCOMES[event.status]
    return _with_class_outcomes(outcomes, listed)


def _with_class_outcomes(outcomes: dict[str, str], listed: list[str]) -> dict[str, str]:
    by_class = {m["test_class"]: (i, o) for i, o in outcomes.items() if (m := CLASS_SETUP.match(i))}
    expanded = dict(outcomes)
    for test_id in listed:
        setup = by_class.get(class_of_test(test_id))
        if setup and test_id not in outcomes:
            expanded[test_id] = setup[1]
            expanded.pop(setup[0], None)
    return expanded


def class_of_test(test_id: str) -> str:
    """`pkg.module.Class.test_x[id-1,smoke]` -> `pkg.module.Class`."""
    return test_id.split("[", 1)[0].rsplit(".", 1)[0]


def service_of(test_id: str) -> str:
    """`tempest.api.compute.servers...` -> compute; also finds the class named inside a
    `setUpClass (tempest.api.compute...)` id; scenario tests are `scenario`."""
    match = re.search(r"tempest\.api\.(\w+)\.", test_id) or re.search(r"tempest\.(\w+)\.", test_id)
    return match[1] if match else "other"


@dataclass(frozen=True)
class Summary:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    by_service: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "by_service": self.by_service,
            "failures": self.failures,
        }


def summarize(outcomes: Mapping[str, str]) -> Summary:
    totals = Counter(outcomes.values())
    by_service: dict[str, dict[str, int]] = {}
    for test_id, outcome in outcomes.items():
        counts = by_service.setdefault(service_of(test_id), dict.fromkeys(OUTCOME_NAMES, 0))
        counts[outcome] += 1
    return Summary(
        passed=totals["passed"],
        failed=totals["failed"],
        skipped=totals["skipped"],
        by_service=dict(sorted(by_service.items())),
        failures=sorted(t for t, outcome in outcomes.items() if outcome == "failed"),
    )
