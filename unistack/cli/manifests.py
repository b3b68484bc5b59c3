"""`unistack manifests`: print the control plane as manifests for a real Kubernetes cluster.

    unistack manifests [--release R] [--size single|small|ha] [--namespace NS]
                       [--registry HOST:PORT] [--output FILE|-] [--no-secrets]

The objects are `unistack.controlplane.manifests`'s; this module reads the options, makes the
secrets the pods share (a random admin password and two Fernet keys, new at every run:
`--no-secrets` leaves them out so that re-applying keeps an installation's own) and writes one
YAML stream to stdout or a file (private: it holds the secrets), for `kubectl apply -f`.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from rich.console import Console

from unistack import __version__
from unistack.cli.statedir import write_private
from unistack.controlplane import kind
from unistack.controlplane import manifests as rendering

_RELEASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._/-]+)?")


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return text

    return check


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "manifests",
        help="print the control plane as manifests for a real Kubernetes cluster",
        description="Print the control plane (CRDs, RBAC, Deployments, the agent DaemonSet) "
        "as one YAML stream for `kubectl apply -f`.",
    )
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--release",
        default=__version__,
        type=_matching(_RELEASE, "a release (an image tag)"),
        help=f"the image tag every service runs (default {__version__})",
    )
    parser.add_argument("--size", choices=kind.SIZES, default="single", help="replicas preset")
    parser.add_argument(
        "--namespace",
        default=kind.NAMESPACE,
        type=_matching(_NAMESPACE, "a namespace name"),
        help=f"where the control plane runs (default {kind.NAMESPACE})",
    )
    parser.add_argument(
        "--registry",
        default=rendering.DEFAULT_REGISTRY,
        type=_matching(_REGISTRY, "a registry (HOST[:PORT])"),
        help="where nodes pull unistack/controlplane from (default 127.0.0.1:5000)",
    )
    parser.add_argument("--output", "-o", default="-", metavar="FILE", help="default: stdout")
    parser.add_argument(
        "--no-secrets",
        action="store_true",
        help="leave out the admin password and token keys (keep an installation's own)",
    )


def new_credentials() -> rendering.Credentials:
    """A random admin password and Keystone's two keys (staged, primary)."""
    keys = (Fernet.generate_key(), Fernet.generate_key())
    return rendering.Credentials(secrets.token_urlsafe(24), keys)


def run(args: argparse.Namespace, console: Console) -> int:
    options = rendering.Options(args.release, args.size, args.namespace, args.registry)
    credentials = None if args.no_secrets else new_credentials()
    text = rendering.to_yaml(rendering.manifests(options, credentials))
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        write_private(Path(args.output), text)
    except OSError as error:
        console.print(f"[red]cannot write {args.output}: {error.strerror}[/]", highlight=False)
        return 1
    console.print(f"wrote {args.output}", highlight=False)
    return 0
