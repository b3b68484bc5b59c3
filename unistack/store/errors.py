"""Errors raised by the store; the API server maps each to a Kubernetes Status."""


class StoreError(Exception):
    """Base class for store failures the caller can act on."""


class NotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class AlreadyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class Conflict(StoreError):
    """The compare-and-swap lost: the object changed since `expected` was read."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"key {key!r}: expected revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    """A watch asked for history older than the compacted revision (410 Gone)."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted; oldest available is {compacted + 1}"
        )
        self.requested = requested
        self.compacted = compacted
