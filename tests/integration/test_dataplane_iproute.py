"""iproute.run, the data plane's one way to exec a command, against real processes."""

from __future__ import annotations

import pytest

from unistack.dataplane import iproute


def test_stdout_comes_back_and_stdin_goes_in_whatever_their_size() -> None:
    assert iproute.run(["echo", "hello"]) == "hello\n"
    big = "x" * 300_000  # more than a pipe holds: stdin must not block the writer
    assert iproute.run(["cat"], big) == big


def test_a_failure_raises_with_exit_code_and_stderr() -> None:
    with pytest.raises(iproute.CommandError) as caught:
        iproute.run(["sh", "-c", "echo out; echo 'went wrong' >&2; exit 3"])
    assert caught.value.returncode == 3
    assert caught.value.stderr == "went wrong"
    assert caught.value.argv[0] == "sh"


def test_a_missing_binary_is_an_os_error() -> None:
    with pytest.raises(FileNotFoundError):
        iproute.run(["unistack-no-such-binary"])
