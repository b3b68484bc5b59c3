"""Run every benchmark against a fresh server and print figures with their targets."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from rich.table import Table

from bench import apiserver
from bench.harness import machine, running_server


async def _run() -> list[apiserver.Row]:
    rows: list[apiserver.Row] = []
    with running_server() as server:
        rows += await apiserver.creates(server)
        rows += await apiserver.list_and_get(server)
        rows += apiserver.memory(server)
        rows += await apiserver.watch_fanout(server)
    return rows


def main() -> int:
    console = Console()
    console.print(f"machine: {machine()}")
    rows = asyncio.run(_run())
    table = Table(title="unistack API server")
    for column in ("benchmark", "figure", "unit", "target", "met"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name, f"{row.figure:,.1f}", row.unit, row.target, "yes" if row.met else "NO"
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
