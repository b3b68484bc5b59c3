"""`unistack verify tempest`: run OpenStack Tempest against the cloud of a state directory.

    unistack verify tempest [--state-dir DIR] [--regex R] [--concurrency N]
                            [--workspace DIR] [--venv DIR]

The work is `unistack.verify.tempest`'s; this module reads the options, orders the steps
(install, discover, `tempest init`, configure, run) and turns the summary into an exit code:
0 when tests ran and none failed. The cloud is `unistack` in `DIR/clouds.yaml`; the workspace
defaults to `DIR/tempest` (its `results.subunit` and `summary.json` stay there).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from rich.console import Console

from unistack.cli.statedir import StateDir, default_state_dir
from unistack.verify import tempest

# Tempest's own `--smoke` selection, limited to the API tests of the services unistack serves.
DEFAULT_REGEX = r"^tempest\.api\.(identity|compute|image|network|volume)\..*\[.*\bsmoke\b.*\]"
CLOUDS_FILE = "clouds.yaml"
WORKSPACE_DIR = "tempest"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`verify` with its one command, `tempest`; the handler is `run`."""
    verify = subparsers.add_parser("verify", help="run other projects' test suites against us")
    suites = verify.add_subparsers(dest="suite", required=True, metavar="SUITE")
    parser = suites.add_parser("tempest", help="run OpenStack Tempest against the cloud")
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--state-dir",
        default=default_state_dir(),
        metavar="DIR",
        help="state directory (default: $UNISTACK_STATE_DIR or ./state)",
    )
    parser.add_argument("--regex", default=DEFAULT_REGEX, help="tests to run (stestr regex)")
    parser.add_argument(
        "--concurrency", type=int, default=0, metavar="N", help="workers (default: one per CPU)"
    )
    parser.add_argument("--workspace", type=Path, metavar="DIR", help="default: DIR/tempest")
    parser.add_argument(
        "--venv", type=Path, default=tempest.DEFAULT_VENV, metavar="DIR", help="Tempest's venv"
    )


def run(args: argparse.Namespace, console: Console) -> int:
    state = StateDir.at(args.state_dir)
    workspace = (args.workspace or state.root / WORKSPACE_DIR).expanduser().resolve()
    try:
        summary = verify(state, workspace, args, console)
    except tempest.VerifyError as error:
        console.print(f"[red]{error}[/]", highlight=False)
        return 1
    except subprocess.CalledProcessError as error:
        console.print(f"[red]installing Tempest failed: {error}[/]", highlight=False)
        return 1
    tempest.print_summary(summary, console)
    console.print(
        f"results: {workspace / tempest.RESULTS_FILE}, {workspace / tempest.SUMMARY_FILE}"
    )
    return 0 if summary.total and not summary.failed else 1


def verify(
    state: StateDir, workspace: Path, args: argparse.Namespace, console: Console
) -> tempest.Summary:
    with console.status("installing Tempest (once per machine)"):
        executable = tempest.ensure_tempest(args.venv.expanduser())
    facts = tempest.discover(tempest.load_cloud(state.root / CLOUDS_FILE))
    warn_about_gaps(facts, console)
    tempest.init_workspace(executable, workspace)
    tempest.write_config(facts, workspace)
    with console.status(f"running Tempest in {workspace}"):
        return tempest.run(executable, workspace, args.regex, args.concurrency)


def warn_about_gaps(facts: tempest.CloudFacts, console: Console) -> None:
    """Say which missing facts will make tests fail or skip, before the long run."""
    missing = [name for name in tempest.SERVICE_TYPES if not facts.available(name)]
    if missing:
        console.print(f"[yellow]not in the catalog (their tests skip): {', '.join(missing)}[/]")
    if facts.available("nova") and not (facts.images and facts.flavors):
        console.print("[yellow]compute has no active image or no flavor: server tests fail[/]")
    if facts.available("neutron") and facts.public_network is None:
        console.print("[yellow]no external network: floating IP tests are off[/]")
