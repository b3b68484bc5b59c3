"""`unistack compact`: ask the API server to drop history up to a revision.

Calls the admin-only `POST /unistack/compact[?revision=N]` (without a revision the server
compacts up to its current one) and prints the revision it compacted to, from the reply
`{"compacted": N}`. Watches that ask for an older revision then get `410 Gone`.
"""

from __future__ import annotations

import json

from rich.console import Console

from unistack.cli import apicall, kubeconfig
from unistack.cli.statedir import StateDir

COMPACT_PATH = "/unistack/compact"
COMPACT_TIMEOUT = 120.0


def compact_path(revision: int | None) -> str:
    return COMPACT_PATH if revision is None else f"{COMPACT_PATH}?revision={revision}"


def compacted_revision(reply: apicall.ApiReply) -> int | None:
    """The revision in a successful reply, or None."""
    if reply.status != 200:
        return None
    try:
        value = json.loads(reply.body).get("compacted")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def compact(state: StateDir, revision: int | None, console: Console) -> int:
    access = kubeconfig.load_access(state.kubeconfig)
    try:
        reply = apicall.request(access, "POST", compact_path(revision), COMPACT_TIMEOUT)
    except apicall.ApiUnreachable as error:
        console.print(f"[red]cannot reach the API server:[/] {error}")
        return 1
    compacted = compacted_revision(reply)
    if compacted is None:
        console.print(f"[red]compaction failed:[/] {reply.status} {reply.text[:500]}")
        return 1
    print(f"compacted revision {compacted}")
    return 0
