"""`unistack serve <service>`: run one control-plane service in this process.

These are the entrypoints the supervisor starts (see `launch`); later each becomes a pod.
`serve apiserver` runs the API server over the state directory's store, certificates and
token file; `serve controllers` runs the garbage collector and namespace controller against
the API through the kubeconfig, like any other client. The services are imported only here,
when they run, so the rest of the CLI starts quickly.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from unistack.cli import supervisor
from unistack.cli.statedir import StateDir


def _missing(paths: list[Path], console: Console) -> bool:
    absent = [str(path) for path in paths if not path.exists()]
    if absent:
        console.print(f"[red]missing {', '.join(absent)}[/]; run `unistack up` first")
    return bool(absent)


def serve_apiserver(state: StateDir, port: int, console: Console) -> int:
    supervisor.bind_to_supervisor()
    if _missing([state.serving_cert, state.serving_key, state.tokens], console):
        return 1
    from unistack.apiserver import server

    settings = server.ServerSettings(
        db_path=str(state.store_db),
        port=port,
        certfile=str(state.serving_cert),
        keyfile=str(state.serving_key),
        token_file=str(state.tokens),
    )
    server.serve(settings)
    return 0


def serve_controllers(state: StateDir, console: Console) -> int:
    supervisor.bind_to_supervisor()
    if _missing([state.kubeconfig], console):
        return 1
    from unistack.kube import main as kube_main

    kube_main.run_controllers(str(state.kubeconfig))
    return 0
