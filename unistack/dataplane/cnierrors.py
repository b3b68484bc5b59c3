"""CNI error codes (spec 1.0, "Error") and the error both plugin and caller raise.

The plugin prints a ``CniError`` as ``{"cniVersion", "code", "msg", "details"}`` on stdout and
exits 1; ``invoke`` parses that back into a ``CniError``. Codes below 100 are the spec's; 100
and up are this plugin's; 999 is the caller's own failure (plugin missing, timeout, garbage).
"""

from __future__ import annotations

from typing import Any

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11

LINK_SETUP_FAILED = 100
DUPLICATE_ALLOCATION = 101
RANGE_EXHAUSTED = 102
CHECK_FAILED = 103
INTERNAL = 199

INVOKE_FAILED = 999


class CniError(Exception):
    """A CNI failure with its spec code, a short message and free-form details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"CNI error {code}: {msg}" + (f" ({details})" if details else ""))
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        """The error object the spec puts on stdout."""
        return {
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CniError:
        """Rebuild the error a plugin printed."""
        return cls(
            int(data.get("code", INVOKE_FAILED)),
            str(data.get("msg", "")),
            str(data.get("details", "")),
        )
