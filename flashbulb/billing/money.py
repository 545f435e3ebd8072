"""Money: integer micro-USD (1 USD = 1_000_000), parsed from and printed as exact decimal USD."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
MAX_USD = 1_000_000_000  # any one amount; far below what a 64-bit micro-USD column holds


def usd_to_micros(value: str | int | float | Decimal) -> int:
    """Parse a USD amount ("0.039", 5) into integer micro-USD, refusing fractions of a micro."""
    try:
        amount = Decimal(str(value)) * MICROS_PER_USD
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not an amount of USD") from exc
    if not amount.is_finite() or abs(amount) > MAX_USD * MICROS_PER_USD:
        raise ValueError(f"{value!r} is not an amount of USD between -{MAX_USD} and {MAX_USD}")
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} USD has more than 6 decimal places")
    return int(amount)


def micros_to_usd(micros: int) -> str:
    return f"{Decimal(micros) / MICROS_PER_USD:.6f}"
