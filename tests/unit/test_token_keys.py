"""The Fernet key repository: rotation as `keystone-manage fernet_rotate` does it, and a codec
that follows the repository's files without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from unistack.tokens import (
    Claims,
    RepositoryCodec,
    TokenCodec,
    TokenError,
    ensure_key_repository,
    load_keys,
    rotate_keys,
)


def claims() -> Claims:
    now = time.time()
    return Claims(user_id="u1", methods=("password",), issued_at=now, expires_at=now + 3600)


def numbers(repository: Path) -> list[int]:
    return sorted(int(p.name) for p in repository.iterdir() if p.name.isdigit())


def test_rotation_promotes_the_staged_key_and_keeps_max_active(tmp_path: Path) -> None:
    repository = tmp_path / "fernet-keys"
    ensure_key_repository(repository)
    staged, first_primary = (repository / "0").read_bytes(), (repository / "1").read_bytes()
    before = TokenCodec(load_keys(repository))
    old_token = before.seal(claims())

    assert rotate_keys(repository) == (2, [])
    assert numbers(repository) == [0, 1, 2]
    assert (repository / "2").read_bytes() == staged  # the staged key is the primary now
    assert (repository / "0").read_bytes() not in (staged, first_primary)
    after = TokenCodec(load_keys(repository))
    new_token = after.seal(claims())
    assert after.open(old_token).user_id == "u1"  # sealed before: still valid
    assert before.open(new_token).user_id == "u1"  # a reader not yet reloaded opens it too

    assert rotate_keys(repository) == (3, [1])  # three kept: staged, primary, one more
    assert numbers(repository) == [0, 2, 3]
    latest = TokenCodec(load_keys(repository))
    with pytest.raises(TokenError):
        latest.open(old_token)  # its key is gone
    assert latest.open(new_token).user_id == "u1"
    assert [p.name for p in repository.iterdir() if not p.name.isdigit()] == []  # no temp files


def test_rotation_refuses_to_keep_fewer_than_two_keys(tmp_path: Path) -> None:
    ensure_key_repository(tmp_path)
    with pytest.raises(ValueError):
        rotate_keys(tmp_path, max_active=1)
    assert numbers(tmp_path) == [0, 1]


def test_a_repository_codec_takes_a_rotation_without_a_restart(tmp_path: Path) -> None:
    ensure_key_repository(tmp_path)
    codec = RepositoryCodec(tmp_path, interval=0.0)
    old_token = codec.seal(claims())
    rotate_keys(tmp_path)
    rotate_keys(tmp_path)  # the key that sealed old_token is gone now
    with pytest.raises(TokenError):
        codec.open(old_token)
    primary = load_keys(tmp_path)[0]
    assert TokenCodec([primary]).open(codec.seal(claims())).user_id == "u1"  # the new primary

    slow = RepositoryCodec(tmp_path, interval=3600)
    token = slow.seal(claims())
    rotate_keys(tmp_path)
    rotate_keys(tmp_path)
    assert slow.open(token).user_id == "u1"  # not looked at again within its interval
