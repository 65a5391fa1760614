"""Numbers as text: an estimate with its standard error.

``format_estimate(value, se)`` rounds the standard error to ``digits`` (2) significant digits
and gives the value to the same decimal place, so neither claims more, nor shows less, than
the error allows:

    format_estimate(1.2345, 0.0033)  -> "1.2345 +- 0.0033"
    format_estimate(88.3123, 0.57)   -> "88.31 +- 0.57"
    format_estimate(-162.3, 1.36)    -> "-162.3 +- 1.4"
    format_estimate(12345.6, 123.4)  -> "12346 +- 123"     (never fewer than 0 decimals)

A missing standard error (None: e.g. one point) shows the value alone in ``fmt``; one that is
0, negative, NaN or infinite cannot place the digits, so the value is shown in ``fmt`` beside it.
Every place that prints a value with its standard error uses this function.
"""

from __future__ import annotations

import math

__all__ = ["format_estimate", "se_decimals"]


def se_decimals(se: float, digits: int = 2) -> int:
    """Decimal places that show ``se`` (finite, > 0) to ``digits`` significant digits; >= 0."""
    places = digits - 1 - math.floor(math.log10(se))
    if places > 0 and round(se, places) >= 10.0 ** (digits - places):  # 0.0996 -> 0.100
        places -= 1
    return max(0, places)


def format_estimate(value: float, se: float | None, digits: int = 2, pm: str = "+-",
                    fmt: str = ".4g") -> str:
    """``value pm se`` with se to ``digits`` significant digits and value to the same decimal
    place (module docstring); ``fmt`` formats the value where se cannot place the digits."""
    if se is None:
        return f"{value:{fmt}}"
    se = float(se)
    if not math.isfinite(se) or se <= 0:
        shown = "0" if se == 0 else f"{se:g}"
        return f"{value:{fmt}} {pm} {shown}"
    places = se_decimals(se, digits)
    return f"{float(value):.{places}f} {pm} {se:.{places}f}"
