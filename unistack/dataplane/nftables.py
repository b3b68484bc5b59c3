"""nftables tables, replaced whole and atomically: the `Nftables` Protocol, `NftCommand`, a fake.

A table is always written in full as one `nft -f -` transaction,
`add table ip T; delete table ip T; table ip T { ... }`: the kernel swaps the old table for the
new one at commit, so packets never see a moment without rules, and a table that does not exist
yet is handled the same way. `NftCommand` runs the `nft` binary (inside a named network
namespace with `ip netns exec` when given `netns`); `FakeNftables` records what it was asked to
do, for tests that run without root. The service proxy (`unistack.agent.proxy`) is the user.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Protocol


class NftError(Exception):
    """`nft` refused a command; the message is its stderr."""


class Nftables(Protocol):
    """What the agent needs from nftables: whole tables in, tables out, and a listing."""

    async def apply_table(self, family: str, name: str, definition: str) -> None:
        """Replace table `family name` by `definition` (a `table family name {...}` text)."""

    async def delete_table(self, family: str, name: str) -> None:
        """Remove the table; nothing happens when it does not exist."""

    async def list_tables(self, prefix: str = "") -> list[tuple[str, str]]:
        """(family, name) of the tables whose name starts with `prefix`."""


def replace_table_script(family: str, name: str, definition: str) -> str:
    """One transaction that creates the table if needed, empties it and fills it again."""
    return f"add table {family} {name}\ndelete table {family} {name}\n{definition}"


def delete_table_script(family: str, name: str) -> str:
    """Idempotent delete: adding first makes `delete` succeed when the table is absent."""
    return f"add table {family} {name}\ndelete table {family} {name}\n"


def parse_tables(listing_json: str, prefix: str = "") -> list[tuple[str, str]]:
    """(family, name) pairs from `nft -j list tables`, filtered by name prefix."""
    entries = json.loads(listing_json).get("nftables", []) if listing_json.strip() else []
    tables = [entry["table"] for entry in entries if "table" in entry]
    return [(t["family"], t["name"]) for t in tables if str(t["name"]).startswith(prefix)]


@dataclass(frozen=True, slots=True)
class NftCommand:
    """The real driver: the `nft` binary, optionally inside network namespace `netns`."""

    netns: str | None = None
    nft: str = "nft"

    def _argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, self.nft, *args]

    async def run(self, *args: str, stdin: str | None = None) -> str:
        """Run nft with `args`; its stdout, or `NftError` with its stderr."""
        process = await asyncio.create_subprocess_exec(
            *self._argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(stdin.encode() if stdin is not None else None)
        if process.returncode != 0:
            raise NftError(err.decode(errors="replace").strip() or f"nft exit {process.returncode}")
        return out.decode()

    async def check(self, script: str) -> None:
        """Validate a script in the kernel without committing it (`nft -c -f -`)."""
        await self.run("-c", "-f", "-", stdin=script)

    async def apply_table(self, family: str, name: str, definition: str) -> None:
        await self.run("-f", "-", stdin=replace_table_script(family, name, definition))

    async def delete_table(self, family: str, name: str) -> None:
        await self.run("-f", "-", stdin=delete_table_script(family, name))

    async def list_tables(self, prefix: str = "") -> list[tuple[str, str]]:
        return parse_tables(await self.run("-j", "list", "tables"), prefix)


@dataclass(slots=True)
class FakeNftables:
    """Records tables in memory; `applied` lists every (family, name, definition) applied."""

    tables: dict[tuple[str, str], str] = field(default_factory=dict)
    applied: list[tuple[str, str, str]] = field(default_factory=list)
    fail_next: Exception | None = None

    async def apply_table(self, family: str, name: str, definition: str) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.tables[(family, name)] = definition
        self.applied.append((family, name, definition))

    async def delete_table(self, family: str, name: str) -> None:
        self.tables.pop((family, name), None)

    async def list_tables(self, prefix: str = "") -> list[tuple[str, str]]:
        return sorted(key for key in self.tables if key[1].startswith(prefix))
