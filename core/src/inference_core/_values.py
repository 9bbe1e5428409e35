"""Value parsers shared by `settings` and `BackendConfig`'s typed option accessors.

Each parser takes the variable's name and its text and returns the typed value, or raises
:class:`~inference_core.errors.ConfigError` whose message names the variable, the bad value,
the problem and what is accepted (``VAR='x': not a boolean; accepted: ...``).  Light on
purpose: ``models`` imports it, so nothing heavy may be imported here.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["BOOL_ACCEPTED", "config_error", "parse_bool", "parse_int", "parse_number"]

#: The words a boolean variable accepts, as error messages and docs list them.
BOOL_ACCEPTED = "true/false/1/0/yes/no/on/off"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def config_error(variable: str, value: str | None, problem: str, accepted: str) -> ConfigError:
    """The :class:`ConfigError` for ``variable=value``: ``VAR='value': problem; accepted: ...``."""
    shown = "" if value is None else f"={value!r}"
    return ConfigError(f"{variable}{shown}: {problem}; accepted: {accepted}", variable=variable)


def parse_bool(variable: str, value: str) -> bool:
    """``true/1/yes/on`` -> True, ``false/0/no/off`` -> False (any case, spaces ignored)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise config_error(variable, value, "not a boolean", BOOL_ACCEPTED)


def parse_int(variable: str, value: str, *, minimum: int | None = 0) -> int:
    """A whole number, ``>= minimum`` unless ``minimum`` is None."""
    accepted = "a whole number" if minimum is None else f"a whole number >= {minimum}"
    try:
        number = int(value.strip())
    except ValueError:
        raise config_error(variable, value, "not a whole number", accepted) from None
    if minimum is not None and number < minimum:
        raise config_error(variable, value, "out of range", accepted)
    return number


def parse_number(
    variable: str,
    value: str,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    unit: str = "",
) -> float:
    """A finite number, ``>= minimum`` (``> minimum`` when ``exclusive``) unless it is None.

    ``unit`` is appended to the accepted-values text (``" (seconds)"``).
    """
    if minimum is None:
        accepted = f"a number{unit}"
    else:
        accepted = f"a number {'>' if exclusive else '>='} {minimum:g}{unit}"
    try:
        number = float(value.strip())
    except ValueError:
        raise config_error(variable, value, "not a number", accepted) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise config_error(variable, value, "not a finite number", accepted)
    if minimum is not None and (number < minimum or (exclusive and number == minimum)):
        raise config_error(variable, value, "out of range", accepted)
    return number
