"""Password hashing with bcrypt (the `bcrypt` library), Keystone's default algorithm and cost.

Keystone hashes with bcrypt at cost 12 by default (`[identity] password_hash_rounds`), and
bcrypt reads at most 72 bytes of a password, so longer ones are cut there as Keystone's are.
Hashing and checking take a few hundred milliseconds of CPU by design; `bcrypt` releases the
GIL while it works, so callers run them in a thread (`asyncio.to_thread`) to keep serving.
"""

from __future__ import annotations

import bcrypt

DEFAULT_ROUNDS = 12
MAX_BYTES = 72


def _bytes(password: str) -> bytes:
    return password.encode()[:MAX_BYTES]


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    return bcrypt.hashpw(_bytes(password), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, hashed: str | None) -> bool:
    """Whether `password` is the one `hashed` was made from (False when there is no hash)."""
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(_bytes(password), hashed.encode())
    except ValueError:
        return False
