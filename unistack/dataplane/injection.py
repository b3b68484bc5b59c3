"""Files injected into a running system container: a server's personality files (Nova's
`personality`, before microversion 2.57), written once when the server is first booted, as
Nova's file injection and its LXC driver did; and its root password (Nova's
`changePassword`), a bcrypt hash in the guest's /etc/shadow, which glibc's crypt (and so the
guest's SSH server) checks.

A path is the guest's: it must resolve inside the guest's root, through the guest's own
symbolic links (`/lib` → `/usr/lib`), and a link the guest made must never lead to the host's
files. Writing through `/proc/<pid>/root/…` from the host would resolve an absolute link
against the host's root, so the writing is done by a child process of our interpreter that
first joins the guest's mount namespace (setns also moves it to that namespace's root, the
guest's): every path it then opens is resolved by the kernel exactly as the guest would.
The child gets the files on stdin as JSON (path → base64), writes each to a temporary name
beside it and renames it over, and makes missing parent directories; it runs nothing of the
guest's. A join needs a single-threaded process, hence a child rather than the agent.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Mapping

import bcrypt

from unistack.dataplane.instances import InstanceError

# What both scripts begin with: join the mount namespace of PID (argv[1]), which also moves
# the process to the guest's root.
_JOIN = """
import base64, ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
namespace = os.open(f"/proc/{sys.argv[1]}/ns/mnt", os.O_RDONLY)
if libc.setns(namespace, 0x00020000) != 0:
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
"""

# Run as `python -c WRITE PID` with {path: base64} on stdin.
WRITE = (
    _JOIN
    + """
for path, body in json.load(sys.stdin).items():
    target = "/" + path.lstrip("/")
    os.makedirs(os.path.dirname(target) or "/", mode=0o755, exist_ok=True)
    temporary = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".new")
    with open(temporary, "wb") as handle:
        handle.write(base64.b64decode(body))
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
"""
)


# Run as `python -c SHADOW PID` with {"user", "hash"} on stdin: the user's line of the guest's
# /etc/shadow holds the hash (made when missing, the other lines kept), mode 0600.
SHADOW = (
    _JOIN
    + """
wanted = json.load(sys.stdin)
try:
    with open("/etc/shadow") as handle:
        lines = handle.read().splitlines()
except FileNotFoundError:
    lines = []
entry = f"{wanted['user']}:{wanted['hash']}:{int(wanted['days'])}:0:99999:7:::"
kept = [line for line in lines if line.split(":", 1)[0] != wanted["user"]]
with open("/etc/.shadow.new", "w") as handle:
    os.fchmod(handle.fileno(), 0o600)
    handle.write("\\n".join([entry, *kept]) + "\\n")
os.replace("/etc/.shadow.new", "/etc/shadow")
"""
)


def set_password(pid: int, user: str, password: str) -> None:
    """`user`'s password in the running guest whose init is `pid` (a bcrypt hash in its
    /etc/shadow); InstanceError saying why when it cannot."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    document = {"user": user, "hash": hashed, "days": int(time.time() // 86400)}
    _run(SHADOW, pid, json.dumps(document), "cannot set the password")


def inject(pid: int, files: Mapping[str, bytes]) -> None:
    """Write `files` into the running guest whose init is `pid`; InstanceError saying which
    failed and why."""
    document = {path: base64.b64encode(body).decode() for path, body in files.items()}
    _run(WRITE, pid, json.dumps(document), "cannot inject personality files")


def _run(script: str, pid: int, stdin: str, failing: str) -> None:
    """`script` in a child of our interpreter, for the guest whose init is `pid`."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(pid)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        raise InstanceError(f"{failing}: no answer in 30 s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exited " + str(done.returncode)])[-1]
        raise InstanceError(f"{failing}: {last}")
