"""Run the benchmarks against a fresh server and print figures with their targets.

`python -m bench` runs all; `python -m bench creates list memory watch pods scheduler` runs
some.
"""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console
from rich.table import Table

from bench import apiserver, pods, scheduler
from bench.harness import describe_cores, machine, running_server


async def _run(only: set[str]) -> list[apiserver.Row]:
    """Run the benchmarks named in `only` (all when empty); list and memory need creates."""
    rows: list[apiserver.Row] = []
    wanted = only or {"creates", "list", "memory", "watch", "pods", "scheduler"}
    if wanted & {"creates", "list", "memory", "watch"}:
        with running_server() as server:
            if wanted & {"creates", "list", "memory"}:
                rows += await apiserver.creates(server)
            if "list" in wanted:
                rows += await apiserver.list_and_get(server)
            if "memory" in wanted:
                rows += apiserver.memory(server)
            if "watch" in wanted:
                rows += await apiserver.watch_fanout(server)
    if "pods" in wanted:
        with running_server(bridge="unistackpods", pod_cidr="10.252.0.0/24") as server:
            rows += await pods.startup(server)
    if "scheduler" in wanted:
        with running_server(bridge="unistacksched", pod_cidr="10.251.0.0/24") as server:
            rows += await scheduler.throughput(server)
        rows += scheduler.decisions()
    return rows


def main() -> int:
    console = Console()
    console.print(f"machine: {machine()}")
    console.print(f"placement: {describe_cores()}")
    console.print(f"command: python -m bench {' '.join(sys.argv[1:])}".rstrip())
    rows = asyncio.run(_run(set(sys.argv[1:])))
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
