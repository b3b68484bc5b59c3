"""MAC addresses for ports: Neutron's default base `fa:16:3e` and three random octets.

Uniqueness is checked by the caller against the ports it knows (24 random bits make a clash
rare; the caller draws again when one happens).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

BASE = "fa:16:3e"
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
ATTEMPTS = 16


def random_mac() -> str:
    tail = ":".join(f"{secrets.randbelow(256):02x}" for _ in range(3))
    return f"{BASE}:{tail}"


def valid_mac(text: object) -> bool:
    """A unicast MAC in canonical lower-case colon form (not all zeros)."""
    if not isinstance(text, str) or not _MAC.match(text.lower()):
        return False
    first = int(text[:2], 16)
    return not first & 1 and text.lower() != "00:00:00:00:00:00"


def unique_mac(taken: Callable[[str], bool]) -> str:
    for _ in range(ATTEMPTS):
        mac = random_mac()
        if not taken(mac):
            return mac
    raise RuntimeError("no free MAC address after several draws")
