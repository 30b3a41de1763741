"""OPEN amounts as people write them ("1000", "0.5") and as the contracts count them (base units,
10**18 per OPEN), converted exactly. A float would not be: `int(1.1 * 10**18)` is
1100000000000000128, so every amount a user gives goes through `parse_open`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from node.errors import InputError

DECIMALS = 18
UNITS_PER_OPEN = 10**DECIMALS


def parse_open(amount: str | Decimal, what: str, *, allow_zero: bool = False) -> int:
    """`amount` OPEN as base units, exactly; InputError naming `what` (the option) if it is not a
    number, is negative (or zero, unless `allow_zero`), or has more than 18 decimal places."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip().replace("_", ""))
    except InvalidOperation:
        raise InputError(f"{what} '{amount}' is not a number of OPEN (e.g. 1000 or 0.5).") from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "a positive amount"
        raise InputError(f"{what} must be {least} of OPEN, got '{amount}'.")
    units = value * UNITS_PER_OPEN
    if units != units.to_integral_value():
        raise InputError(f"{what} '{amount}' has more than {DECIMALS} decimal places (1 OPEN is 10^18 base units).")
    return int(units)
