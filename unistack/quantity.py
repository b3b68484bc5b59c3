"""Kubernetes resource quantities: "100m", "1Gi", "2", "1e3", parsed to exact fractions.

The grammar is upstream's (`k8s.io/apimachinery/pkg/api/resource`): a signed decimal number
followed by a binary-SI suffix (Ki..Ei), a decimal-SI suffix (n, u, m, "", k, M, G, T, P, E)
or a decimal exponent (e3, E-2). Pod validation uses this to check requests and limits, and
pod defaulting to compute the QoS class; the scheduler and the node agent count with it.
It sits outside the layers (it imports nothing of unistack) so that every layer can use it.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)

_NUMBER = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; JSON numbers are accepted as upstream does."""
    if isinstance(value, bool):
        raise QuantityError(FORMAT_ERROR)
    if isinstance(value, int | float):
        return Fraction(str(value))
    if not isinstance(value, str):
        raise QuantityError(FORMAT_ERROR)
    return _parse_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_text(value: str) -> Fraction:
    """Quantities repeat across objects ("100m", "64Mi"), so parsed text is cached."""
    match = _NUMBER.fullmatch(value.strip())
    if match is None:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = match.groups()
    return Fraction(number) * _multiplier(suffix)


def _multiplier(suffix: str) -> Fraction:
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    exponent = _EXPONENT.fullmatch(suffix)
    if exponent is None:
        raise QuantityError(FORMAT_ERROR)
    return Fraction(10) ** int(exponent.group(1))


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def int_value(quantity: Fraction) -> int:
    """Whole units, rounded up as upstream's `Value()` does."""
    return math.ceil(quantity)


def milli_value(quantity: Fraction) -> int:
    """Thousandths of a unit, rounded up as upstream's `MilliValue()` does."""
    return math.ceil(quantity * 1000)
