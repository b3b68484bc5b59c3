"""The built-in `unistack/python` image: the host's Python and unistack's dependencies.

There is no internet, so the image is made from what this machine runs: the interpreter that
runs unistack (`sys.base_prefix`), relocated to `/usr/local` (Python finds its standard
library next to its executable); its standard library without the test suite, IDLE, Tk, the
bundled installers and the static library; the shared libraries `ldd` says the interpreter
and every extension module need, at the paths the dynamic loader searches; and, in a layer of
its own, the installed distributions `unistack` requires (their own requirements and extras
followed), as recorded in their `RECORD` files. On top of the busybox layer, so `sh` and the
usual tools are there. Files keep their modification times so the bytecode caches stay valid.

With unistack's source mounted or added as one more layer (the self-hosted control plane
does that), the image runs unistack's own services.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.requirements import Requirement

from unistack.images.build import Entry, with_parents

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
PREFIX = "usr/local"
STDLIB = f"{PREFIX}/lib/python{VERSION}"
SITE_PACKAGES = f"{STDLIB}/site-packages"
ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH=/usr/local/lib",
    "LANG=C.UTF-8",
)
# Parts of the standard library no service uses; the test suite alone is larger than the rest.
LEFT_OUT = frozenset(
    {
        "test",
        "site-packages",
        f"config-{VERSION}-{sys.implementation._multiarch}",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "__phello__",
    }
)
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def base_prefix() -> Path:
    return Path(sys.base_prefix)


def interpreter() -> Path:
    return base_prefix() / "bin" / f"python{VERSION}"


def libpython() -> Path | None:
    candidate = base_prefix() / "lib" / f"libpython{VERSION}.so.1.0"
    return candidate if candidate.exists() else None


def runtime_layer() -> list[Entry]:
    """The interpreter, its standard library and the shared libraries they load."""
    entries = [
        host_file(f"{PREFIX}/bin/python{VERSION}", interpreter()),
        Entry(f"{PREFIX}/bin/python3", "symlink", 0o777, target=f"python{VERSION}"),
        Entry(f"{PREFIX}/bin/python", "symlink", 0o777, target=f"python{VERSION}"),
    ]
    shared = [interpreter()]
    if (library := libpython()) is not None:
        entries.append(host_file(f"{PREFIX}/lib/{library.name}", library))
        entries.append(
            Entry(f"{PREFIX}/lib/libpython{VERSION}.so", "symlink", 0o777, target=library.name)
        )
        shared.append(library)
    stdlib = base_prefix() / "lib" / f"python{VERSION}"
    for path in _walk(stdlib):
        relative = path.relative_to(stdlib)
        if relative.parts[0] in LEFT_OUT or path.name.startswith("_tkinter"):
            continue
        entries.append(host_file(f"{STDLIB}/{relative}", path))
        if path.suffix == ".so":
            shared.append(path)
    entries += [host_file(str(path).lstrip("/"), path) for path in shared_libraries(shared)]
    entries += loader_links(entries)
    return with_parents(unique(entries))


def packages_layer() -> list[Entry]:
    """The installed distributions unistack needs, under site-packages."""
    entries: list[Entry] = []
    extensions: list[Path] = []
    for dist in required_distributions():
        for relative in dist.files or ():
            source = Path(str(dist.locate_file(relative)))
            if relative.parts[0] == ".." or not source.is_file():
                continue  # console scripts in bin/, files removed since install
            entries.append(host_file(f"{SITE_PACKAGES}/{relative}", source))
            if source.suffix == ".so":
                extensions.append(source)
    runtime = {str(path) for path in shared_libraries([interpreter()])}
    for path in shared_libraries(extensions):
        if str(path) not in runtime and not str(path).startswith(str(base_prefix())):
            entries.append(host_file(str(path).lstrip("/"), path))
    return with_parents(unique(entries))


@functools.cache
def required_distributions(root: str = "unistack") -> tuple[importlib.metadata.Distribution, ...]:
    """`root`'s installed requirements, transitively, with the extras asked for (not itself)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        key = (_normal(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional requirement not installed here
        if _normal(name) != _normal(root):
            found[_normal(name)] = dist
        for text in dist.requires or ():
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return tuple(found[name] for name in sorted(found))


def inputs() -> tuple[Path, ...]:
    """The host files whose change means a rebuild: the interpreter and each distribution's
    RECORD (rewritten whenever it is installed again)."""
    paths = [interpreter(), *(p for p in [libpython()] if p is not None)]
    for dist in required_distributions():
        record = next((f for f in dist.files or () if f.name == "RECORD"), None)
        if record is not None:
            paths.append(Path(str(dist.locate_file(record))))
    return tuple(paths)


def shared_libraries(binaries: Iterable[Path]) -> list[Path]:
    """The shared libraries (and the loader) the binaries need, resolved, without repeats."""
    found: set[Path] = set()
    for chunk in _chunks([str(b) for b in binaries], 64):
        result = subprocess.run(
            ["ldd", *chunk], capture_output=True, text=True, timeout=60, check=False
        )
        for match in _LDD_LINE.finditer(result.stdout):
            found.add(Path(match.group(1)))
    return sorted(found)


def loader_links(entries: list[Entry]) -> list[Entry]:
    """The dynamic loader is asked for by its canonical path (`/lib64/ld-linux-x86-64.so.2`
    on x86-64), which is a symlink on the host: keep the link as well as the file."""
    links = []
    present = {e.path for e in entries}
    for entry in entries:
        source = entry.source
        if source is None or not source.name.startswith("ld-linux"):
            continue
        for directory in ("lib64", "lib"):
            canonical = Path("/", directory, source.name)
            if canonical.is_symlink() and f"{directory}/{source.name}" not in present:
                link = f"{directory}/{source.name}"
                links.append(Entry(link, "symlink", 0o777, target="/" + entry.path))
    return links


def programs_with_libraries(programs: Iterable[Path]) -> list[Entry]:
    """Host programs at their own paths, the shared libraries they load and the loader's
    canonical link: what they need to run in an image that has no libc of its own."""
    found = list(programs)
    entries = [host_file(str(path).lstrip("/"), path) for path in found]
    entries += [host_file(str(lib).lstrip("/"), lib) for lib in shared_libraries(found)]
    return unique(entries + loader_links(entries))


def unique(entries: list[Entry]) -> list[Entry]:
    return list({entry.path: entry for entry in entries}.values())


def host_file(path: str, source: Path) -> Entry:
    status = source.stat()
    return Entry(path, "file", status.st_mode & 0o7777, source=source, mtime=int(status.st_mtime))


def _walk(root: Path) -> Iterator[Path]:
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                yield path


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
