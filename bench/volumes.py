"""The volume pool's data path on a real loop-mounted xfs: create, snapshot and clone of 10 GB
volumes, against issue 5's target of 50 ms each.

A `LoopXfsPool` is made in a fresh `/tmp/unistack-bench-volumes-*` directory (a sparse
backing file, so the pool's size costs nothing until written). One source volume of
``--size-gb`` gets ``--written-mb`` of data in 1 MiB runs before snapshots and clones are
taken, so the reflinks have extents to share; a second, *scattered* source gets one 4 KiB
write every ``--stride-mb`` (10,240 extents for 10 GB at 1 MiB), the worst case for a
reflink, whose cost grows with the number of extents, not the size; a third holds a fresh
ext4, as a guest's volume does. Each operation runs ``--repeat`` times and reports p50 and
p99; pool set-up, loop attach/detach and the sparse copy a `DirectoryPool` falls back to
without reflinks are shown for comparison. Everything is torn
down (`volumepool.cleanup`, then the directory removed) even when a step fails.

`python -m bench.volumes [--repeat 50] [--size-gb 10] [--written-mb 256] [--stride-mb 1]`;
needs root, loop devices and mkfs.xfs, and says so otherwise.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import harness
from unistack.dataplane import loopdev, volumefiles, volumepool

GIB = 1 << 30
MIB = 1 << 20
TARGET_MS = 50.0


@contextmanager
def _pool(size_gb: int) -> Iterator[volumepool.LoopXfsPool]:
    root = Path(tempfile.mkdtemp(prefix="unistack-bench-volumes-"))
    try:
        yield volumepool.LoopXfsPool(root, max(4 * size_gb, 64) * GIB)
    finally:
        volumepool.cleanup(root)
        shutil.rmtree(root, ignore_errors=True)


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return (time.perf_counter() - began) * 1000


def _repeat(count: int, action: Callable[[int], object]) -> list[float]:
    return [_timed(functools.partial(action, i)) for i in range(count)]


def _fill(path: Path, written: int, stride: int, run: int) -> None:
    """Write ``run`` bytes every ``stride`` bytes until ``written`` bytes are down."""
    block = os.urandom(run)
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset in range(0, written // run * stride, stride):
            os.pwrite(fd, block, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _row(table: Table, name: str, timings: list[float], target: float | None) -> None:
    p50, p99 = harness.percentile(timings, 50), harness.percentile(timings, 99)
    if target is None:
        table.add_row(name, f"{p50:.2f} ms", f"{p99:.2f} ms", "-", "-")
        return
    verdict = f"{target / p99:.0f}x under" if p99 <= target else f"NO, {p99 / target:.1f}x over"
    table.add_row(name, f"{p50:.2f} ms", f"{p99:.2f} ms", f"<= {target:.0f} ms", verdict)


def run(pool: volumepool.LoopXfsPool, args: argparse.Namespace) -> Table:
    table = Table(title=f"volume pool (loop-mounted xfs, reflink), {args.repeat} repetitions")
    for column in ("operation", "p50", "p99", "target", "met"):
        table.add_column(column)
    _row(table, "pool ensure: mkfs.xfs + loop + mount", [_timed(pool.ensure)], None)
    _row(table, "pool ensure, already mounted", _repeat(args.repeat, lambda i: pool.ensure()), None)
    _copies(pool, table, args)
    _housekeeping(pool, table, args)
    _extents(pool, table, args)
    _without_reflink(pool, table, args)
    pool.teardown()
    _row(table, "pool ensure after teardown: loop + mount", [_timed(pool.ensure)], None)
    return table


def _copies(pool: volumepool.LoopXfsPool, table: Table, args: argparse.Namespace) -> None:
    """Create, then snapshot and clone a volume whose data lies in 1 MiB runs."""
    size, n = args.size_gb * GIB, args.repeat
    _row(
        table,
        f"create {args.size_gb} GB",
        _repeat(n, lambda i: pool.create(f"c{i}", size)),
        TARGET_MS,
    )
    pool.create("src", size)
    _fill(pool.path("src"), args.written_mb * MIB, MIB, MIB)
    label = f"{args.size_gb} GB with {args.written_mb} MB written"
    _row(
        table, f"snapshot, {label}", _repeat(n, lambda i: pool.snapshot("src", f"s{i}")), TARGET_MS
    )
    _row(
        table, f"clone, {label}", _repeat(n, lambda i: pool.clone("src", f"k{i}", size)), TARGET_MS
    )
    restore = _repeat(n, lambda i: pool.create_from_snapshot(f"s{i}", f"r{i}", size))
    _row(table, f"create from snapshot, {label}", restore, TARGET_MS)


def _extents(pool: volumepool.LoopXfsPool, table: Table, args: argparse.Namespace) -> None:
    """Clones of a volume holding a fresh ext4 (what a guest makes), and of the worst case:
    one 4 KiB extent every stride."""
    size, n = args.size_gb * GIB, args.repeat
    if shutil.which("mkfs.ext4"):
        fresh = pool.create("ext4", size)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(fresh)], check=True, capture_output=True)
        clones = _repeat(n, lambda i: pool.clone("ext4", f"e{i}", size))
        _row(table, f"clone, {args.size_gb} GB holding a fresh ext4", clones, TARGET_MS)
    pool.create("scattered", size)
    extents = size // (args.stride_mb * MIB)
    _fill(pool.path("scattered"), extents * 4096, args.stride_mb * MIB, 4096)
    clones = _repeat(n, lambda i: pool.clone("scattered", f"x{i}", size))
    _row(table, f"clone, {args.size_gb} GB, {extents:,} scattered 4 KiB extents", clones, TARGET_MS)
    per_extent = harness.percentile(clones, 50) * 1000 / extents
    within = TARGET_MS * 1000 / per_extent
    table.add_row(
        "  reflink cost per extent",
        f"{per_extent:.1f} µs",
        "",
        "",
        f"{within:,.0f} extents in 50 ms",
    )


def _without_reflink(pool: volumepool.LoopXfsPool, table: Table, args: argparse.Namespace) -> None:
    """The sparse copy `DirectoryPool` makes where the filesystem has no reflinks."""
    copies, source = min(args.repeat, 3), pool.path("src")
    sparse = _repeat(copies, lambda i: volumefiles.sparse_copy(source, source.with_name(f"p{i}")))
    label = f"{args.size_gb} GB with {args.written_mb} MB written"
    _row(table, f"sparse copy (no reflink), {label}, x{copies}", sparse, None)


def _housekeeping(pool: volumepool.LoopXfsPool, table: Table, args: argparse.Namespace) -> None:
    n, size = args.repeat, args.size_gb * GIB
    _row(
        table,
        "extend to twice the size",
        _repeat(n, lambda i: pool.extend(f"c{i}", 2 * size)),
        None,
    )
    _row(
        table, "attach + detach a loop device", _repeat(n, lambda i: _attach_detach(pool, i)), None
    )
    _row(table, "delete a clone", _repeat(n, lambda i: pool.delete(f"k{i}")), None)
    _row(table, "delete a snapshot", _repeat(n, lambda i: pool.delete_snapshot(f"s{i}")), None)


def _attach_detach(pool: volumepool.LoopXfsPool, i: int) -> None:
    loopdev.detach_loop(loopdev.attach_loop(pool.path(f"c{i}")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.volumes")
    parser.add_argument("--repeat", type=int, default=50, help="repetitions of each operation")
    parser.add_argument("--size-gb", type=int, default=10, help="volume size")
    parser.add_argument("--written-mb", type=int, default=256, help="data in the source volume")
    parser.add_argument("--stride-mb", type=int, default=1, help="scattered source: 4 KiB per")
    args = parser.parse_args(argv)
    console = Console()
    console.print(f"machine: {harness.machine()}")
    console.print(f"command: python -m bench.volumes {' '.join(argv or sys.argv[1:])}".rstrip())
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
        console.print("skipped: needs root and mkfs.xfs (xfsprogs)")
        return 1
    with _pool(args.size_gb) as pool:
        try:
            console.print(run(pool, args))
        except volumepool.PoolUnavailable as error:
            console.print(f"skipped: {error}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
