"""Run a standalone registry: `python -m unistack.images --root DIR [--host H] [--port P]`.

Seeds the built-in images into the store first, then serves it. The CLI's own command for
this (when it has one) should do the same two calls: `ensure_builtin_images`, `serve`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from unistack.images import build, reference, registry, store


def main() -> None:
    default_host, _, default_port = reference.DEFAULT_REGISTRY.rpartition(":")
    parser = argparse.ArgumentParser(prog="python -m unistack.images", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="image store directory")
    parser.add_argument("--host", default=default_host)
    parser.add_argument("--port", type=int, default=int(default_port))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name, digest in build.ensure_builtin_images(store.ImageStore(args.root)).items():
        print(f"{name} {digest}")
    registry.serve(args.root, args.host, args.port)


if __name__ == "__main__":
    main()
