"""`unistack verify`: Tempest, then load under chaos, against the cloud of a state directory.

    unistack verify [--state-dir DIR] [--regex R] [--interval S] [--duration S] ...
    unistack verify tempest [--state-dir DIR] [--regex R] [--concurrency N]
                            [--chaos-interval S] [--workspace DIR] [--venv DIR]

Bare `verify` is the pipeline TACO runs for each change: Tempest (the smoke selection by
default), then the Rally-style load while `unistack chaos` kills a control-plane pod every
`--interval` seconds for `--duration`; one report (the terminal, and JSON in
`DIR/verify/report-<time>.json`). `verify tempest` runs Tempest alone, or with
`--chaos-interval S` while a control-plane pod is killed every S seconds (the kills are
reported after Tempest's table).

The work is `unistack.verify`'s (`tempest`, `chaos`, `load`); this module reads the options,
orders the steps (install, discover, `tempest init`, configure, run) and turns the results
into an exit code: 0 when tests ran and none failed, and every kill was recovered from
without a failed request. The cloud is `unistack` in `DIR/clouds.yaml`; the Tempest
workspace defaults to `DIR/tempest` (its `results.subunit` and `summary.json` stay there).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from rich.console import Console

from unistack.cli import chaos as chaos_cli
from unistack.cli import kubeconfig
from unistack.cli.statedir import StateDir, default_state_dir
from unistack.images import vmimage
from unistack.verify import chaos, tempest

# Tempest's own `--smoke` selection, limited to the API tests of the services unistack serves.
DEFAULT_REGEX = r"^tempest\.api\.(identity|compute|image|network|volume)\..*\[.*\bsmoke\b.*\]"
CLOUDS_FILE = "clouds.yaml"
WORKSPACE_DIR = "tempest"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`verify` (the pipeline) with one suite command, `tempest`."""
    verify = subparsers.add_parser(
        "verify", help="Tempest, then load under chaos: one report (or one suite alone)"
    )
    verify.set_defaults(handler=run_pipeline)
    _tempest_options(verify)
    chaos_cli.add_options(verify, duration=120.0)
    suites = verify.add_subparsers(dest="suite", metavar="SUITE")
    parser = suites.add_parser("tempest", help="run OpenStack Tempest against the cloud")
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--state-dir",
        default=default_state_dir(),
        metavar="DIR",
        help="state directory (default: $UNISTACK_STATE_DIR or ./state)",
    )
    _tempest_options(parser)
    parser.add_argument(
        "--chaos-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="delete a control-plane pod every S seconds while Tempest runs (default: never)",
    )


def _tempest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--regex", default=DEFAULT_REGEX, help="tests to run (stestr regex)")
    parser.add_argument(
        "--concurrency", type=int, default=0, metavar="N", help="workers (default: one per CPU)"
    )
    parser.add_argument("--workspace", type=Path, metavar="DIR", help="default: DIR/tempest")
    parser.add_argument(
        "--venv", type=Path, default=tempest.DEFAULT_VENV, metavar="DIR", help="Tempest's venv"
    )
    parser.add_argument(
        "--vm-servers",
        action="store_true",
        help="boot Tempest's servers from the tiny VM (QEMU) instead of the busybox container:"
        " with two hosts up, the live-migration tests run",
    )


def run(args: argparse.Namespace, console: Console) -> int:
    state = StateDir.at(args.state_dir)
    workspace = (args.workspace or state.root / WORKSPACE_DIR).expanduser().resolve()
    killer = Killer(state, args.chaos_interval) if args.chaos_interval > 0 else None
    try:
        summary = verify(state, workspace, args, console, killer)
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
    recovered = True
    if killer is not None and killer.report is not None:
        chaos.print_report(killer.report, console)
        recovered = all(kill.recovery is not None for kill in killer.report.kills)
    return 0 if summary.total and not summary.failed and recovered else 1


def run_pipeline(args: argparse.Namespace, console: Console) -> int:
    """Tempest, then load with chaos; one report. Both must pass."""
    state = StateDir.at(args.state_dir)
    workspace = (args.workspace or state.root / WORKSPACE_DIR).expanduser().resolve()
    started = time.time()
    console.rule("1/2 Tempest")
    try:
        summary = verify(state, workspace, args, console, None)
    except (tempest.VerifyError, subprocess.CalledProcessError) as error:
        console.print(f"[red]Tempest could not run: {error}[/]", highlight=False)
        return 1
    tempest.print_summary(summary, console)
    console.rule("2/2 load under chaos")
    report = chaos_cli.chaos_under_load(args, state, console)
    chaos.print_report(report, console)
    passed = bool(summary.total) and not summary.failed and report.ok and bool(report.kills)
    document = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "ok": passed,
        "tempest": {**summary.as_json(), "regex": args.regex, "workspace": str(workspace)},
        "chaos": chaos.report_json(report),
    }
    path = chaos_cli.report_path(args, state, "verify")
    chaos_cli.write_json(path, document)
    verdict = "[green]passed[/]" if passed else "[red]FAILED[/]"
    console.print(f"verify {verdict}: report {path}", highlight=False)
    return 0 if passed else 1


class Killer:
    """Deletes a control-plane pod every `interval` seconds in a thread, until stopped."""

    def __init__(self, state: StateDir, interval: float) -> None:
        access = kubeconfig.load_access(state.kubeconfig)
        self.target = chaos.PodTarget(access.server, access.ca_pem, access.token)
        self.interval = interval
        self.stopping = threading.Event()
        self.report: chaos.Report | None = None
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def _run(self) -> None:
        forever = float("inf")
        self.report = chaos.run(self.target, self.interval, forever, stopping=self.stopping)

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=180)


def verify(
    state: StateDir,
    workspace: Path,
    args: argparse.Namespace,
    console: Console,
    killer: Killer | None,
) -> tempest.Summary:
    with console.status("installing Tempest (once per machine)"):
        executable = tempest.ensure_tempest(args.venv.expanduser())
    cloud = tempest.load_cloud(state.root / CLOUDS_FILE)
    facts = tempest.discover(cloud, vmimage.machine_dir())
    warn_about_gaps(facts, console)
    tempest.init_workspace(executable, workspace)
    tempest.write_config(facts, workspace, args.vm_servers)
    if killer is None:
        with console.status(f"running Tempest in {workspace}"):
            return tempest.run(executable, workspace, args.regex, args.concurrency)
    with console.status(f"running Tempest in {workspace}, a pod deleted every "
                        f"{killer.interval:g} s"), killer:  # fmt: skip
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
