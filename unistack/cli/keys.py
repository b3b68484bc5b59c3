"""`unistack keys rotate`: rotate the identity service's Fernet keys, as `keystone-manage
fernet_rotate` does (`tokens.rotate_keys`).

The state directory's repository is rotated in place; the API server and the OpenStack APIs
that read it (`tokens.RepositoryCodec`) take the new keys at their next token. Self-hosted,
the Secret `unistack-fernet-keys` the API pods mount is published again, and the operator
rolls them onto it (`render.KEYS_HASH`). Tokens sealed before stay valid while their key is
kept (`--max-active`, Keystone's `max_active_keys`), and those sealed with the new primary
are valid at every pod throughout the roll: it was the staged key, which every pod has.
"""

from __future__ import annotations

import asyncio

from rich.console import Console

from unistack import tokens
from unistack.cli import hostoptions, launch
from unistack.cli.statedir import StateDir

DEFAULT_MAX_ACTIVE = 3


def rotate(state: StateDir, max_active: int, console: Console) -> int:
    if not state.fernet_keys.is_dir():
        console.print(f"[red]no key repository at {state.fernet_keys}[/] (run `unistack up`)")
        return 1
    try:
        primary, removed = tokens.rotate_keys(state.fernet_keys, max_active)
    except (ValueError, OSError) as error:
        console.print(f"[red]cannot rotate the keys:[/] {error}")
        return 1
    gone = ", ".join(str(n) for n in removed) or "none"
    print(f"rotated: key {primary} is primary, a new key 0 is staged; removed: {gone}")
    options = hostoptions.load(state)
    if not options.self_hosted or launch.running_supervisor(state) is None:
        return 0
    try:
        asyncio.run(_publish(state, options))
    except Exception as error:  # the next start publishes it anyway
        console.print(f"[yellow]the keys' Secret was not published:[/] {error}")
        return 1
    print("published the Secret unistack-fernet-keys: the API pods roll onto it")
    return 0


async def _publish(state: StateDir, options: hostoptions.HostOptions) -> None:
    from unistack.cli import selfhost
    from unistack.client import kubeconfig
    from unistack.client.api import Client

    port = int(state.load_settings().get("port") or 6443)
    client = Client(kubeconfig.load_transport(str(state.kubeconfig)))
    try:
        await selfhost.publish(client, selfhost.published_objects(state, options, port))
    finally:
        await client.close()
