"""Password hashing with bcrypt (the `bcrypt` library), Keystone's default algorithm and cost.

Keystone hashes with bcrypt at cost 12 by default (`[identity] password_hash_rounds`), and
bcrypt reads at most 72 bytes of a password, so longer ones are cut there as Keystone's are.
Hashing and checking take a few hundred milliseconds of CPU by design; `bcrypt` releases the
GIL while it works, so callers run them in a thread (`asyncio.to_thread`) to keep serving.
"""

from __future__ import annotations

import functools

import bcrypt

DEFAULT_ROUNDS = 12
MAX_BYTES = 72


def _bytes(password: str) -> bytes:
    return password.encode()[:MAX_BYTES]


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    return bcrypt.hashpw(_bytes(password), bcrypt.gensalt(rounds)).decode()


@functools.cache
def _stand_in() -> bytes:
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(DEFAULT_ROUNDS))


def check_password(password: str, hashed: str | None) -> bool:
    """Whether `password` is the one `hashed` was made from. Without a hash (no such user)
    the check still runs, against a stand-in, so the answer takes as long either way and its
    timing does not tell a caller which user names exist."""
    try:
        matched = bcrypt.checkpw(_bytes(password), hashed.encode() if hashed else _stand_in())
    except ValueError:
        return False
    return matched and bool(hashed)
