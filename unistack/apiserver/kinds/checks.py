"""Field checks shared by the built-in kinds, worded as kube-apiserver words them.

Two layers: `*_problems(value)` return upstream's messages for a string format (port names,
config keys, environment variable names), and the `check_*` functions turn values at a field
path into `FieldError`s (enums, ranges, immutability). DNS names, labels and selectors come
from `unistack.apiserver.validation`, which also validates every object's metadata; the kind
modules compose both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from unistack.apiserver.errors import (
    FieldError,
    invalid_field,
    required_field,
    type_invalid_field,
    unsupported_field,
)
from unistack.apiserver.validation import IMMUTABLE, qualified_name_errors, regex_error

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r".*[a-z].*")

STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def max_length(limit: int) -> str:
    return f"must be no more than {limit} bytes"


def _chdir_prefix_problems(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def config_key_problems(value: str) -> list[str]:
    """Keys of ConfigMap and Secret data."""
    problems = [max_length(253)] if len(value) > 253 else []
    if not _CONFIG_KEY.fullmatch(value):
        problems.append(
            regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                _CONFIG_KEY.pattern,
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    return problems + _chdir_prefix_problems(value)


def env_var_name_problems(value: str) -> list[str]:
    problems: list[str] = []
    if not _ENV_VAR_NAME.fullmatch(value):
        problems.append(
            regex_error(
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.', and must not start with a digit",
                _ENV_VAR_NAME.pattern,
                "my.env-name",
                "MY_ENV.NAME",
                "MyEnvName1",
            )
        )
    return problems + _chdir_prefix_problems(value)


def port_number_problems(value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def port_name_problems(name: str) -> list[str]:
    problems = [max_length(15)] if len(name) > 15 else []
    if not _PORT_NAME_CHARS.fullmatch(name):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.fullmatch(name):
        problems.append("must contain at least one letter (a-z)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens (-)")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen (-)")
    return problems


def problems_at(field: str, value: Any, problems: list[str]) -> list[FieldError]:
    """One Invalid error per message, as upstream reports format problems."""
    return [invalid_field(field, value, problem) for problem in problems]


def check_name(field: str, value: Any, problems_of: Callable[[str], list[str]]) -> list[FieldError]:
    """A required name checked with a `*_problems` or `validation.*_errors` function."""
    if value is None or value == "":
        return [required_field(field)]
    if not isinstance(value, str):
        return [type_error(field, value, "string")]
    return problems_at(field, value, problems_of(value))


def check_enum(
    field: str, value: Any, allowed: Sequence[str], *, required: bool = True
) -> list[FieldError]:
    if value is None or value == "":
        return [required_field(field)] if required else []
    if value not in allowed:
        return [unsupported_field(field, value, list(allowed))]
    return []


def check_port_number(field: str, value: Any) -> list[FieldError]:
    return problems_at(field, value, port_number_problems(value))


def check_port_number_or_name(field: str, value: Any) -> list[FieldError]:
    """A `targetPort`-style IntOrString port."""
    if isinstance(value, str):
        return problems_at(field, value, port_name_problems(value))
    return check_port_number(field, value)


def check_nonnegative(field: str, value: Any) -> list[FieldError]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [type_error(field, value, "integer")]
    if value < 0:
        return [invalid_field(field, value, "must be greater than or equal to 0")]
    return []


def check_positive(field: str, value: Any) -> list[FieldError]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [type_error(field, value, "integer")]
    if value <= 0:
        return [invalid_field(field, value, "must be greater than 0")]
    return []


def check_immutable(field: str, new: Any, old: Any) -> list[FieldError]:
    return [] if new == old else [invalid_field(field, new, IMMUTABLE)]


def check_int_or_percent(field: str, value: Any) -> list[FieldError]:
    """`maxSurge`-style IntOrString: a non-negative integer or "N%"."""
    if isinstance(value, str):
        if re.fullmatch(r"[0-9]+%", value):
            return []
        message = "a valid percent string must be a numeric string followed by an ending '%'"
        return [invalid_field(field, value, regex_error(message, "[0-9]+%", "1%", "93%"))]
    return check_nonnegative(field, value)


def int_or_percent_is_zero(value: Any) -> bool:
    return value in (0, "0%")


def percent_over_100(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.endswith("%")
        and value[:-1].isdigit()
        and int(value[:-1]) > 100
    )


def check_finalizer(field: str, value: Any) -> list[FieldError]:
    if not isinstance(value, str):
        return [type_error(field, value, "string")]
    errs = problems_at(field, value, qualified_name_errors(value))
    if not errs and "/" not in value and value not in STANDARD_FINALIZERS:
        detail = "name is neither a standard finalizer name nor is it fully qualified"
        errs.append(invalid_field(field, value, detail))
    return errs


def type_error(field: str, value: Any, type_name: str) -> FieldError:
    return type_invalid_field(field, value, type_name)
