"""A number with its standard error as text (reports/numbers.py): the error to 2 significant
digits and the number to the same decimal place, wherever one is printed (issue 27: an
inference gap's standard error of 0.0033 showed as "+- 0.00")."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pyrovae.cli.evaluate import format_table
from pyrovae.reports.numbers import format_estimate, se_decimals


@pytest.mark.parametrize("value, se, expected", [
    (1.2345, 0.0033, "1.2345 +- 0.0033"),
    (88.3123, 0.57, "88.31 +- 0.57"),
    (0.0123456, 0.0033, "0.0123 +- 0.0033"),
    (-162.3, 1.36, "-162.3 +- 1.4"),
    (-38.2271, 0.1512, "-38.23 +- 0.15"),
    (12345.6, 123.4, "12346 +- 123"),         # never fewer than 0 decimals
    (95.0, 57.0, "95 +- 57"),
    (0.5, 0.0996, "0.50 +- 0.10"),            # the error rounds up to a new digit
    (3.0, 9.96, "3 +- 10"),
    (2.5e-5, 3.3e-7, "0.00002500 +- 0.00000033"),
    (-0.0, 0.012, "-0.000 +- 0.012"),
])
def test_the_error_has_two_significant_digits_and_the_value_its_decimal_place(value, se,
                                                                              expected):
    assert format_estimate(value, se) == expected


def test_more_digits_and_another_sign():
    assert format_estimate(1.23456, 0.0033, digits=3) == "1.23456 +- 0.00330"
    assert format_estimate(88.3123, 0.57, pm="±") == "88.31 ± 0.57"


@pytest.mark.parametrize("se, expected", [
    (None, "1.235"), (0.0, "1.235 +- 0"), (float("nan"), "1.235 +- nan"),
    (float("inf"), "1.235 +- inf"), (-0.5, "1.235 +- -0.5"),
])
def test_an_error_that_cannot_place_the_digits_shows_the_value_in_fmt(se, expected):
    assert format_estimate(1.23456, se) == expected
    assert format_estimate(1.23456, se, fmt=".2f").startswith("1.23")


def test_numpy_numbers_and_a_nan_value():
    assert format_estimate(np.float64(88.3123), np.float32(0.57)) == "88.31 +- 0.57"
    assert format_estimate(float("nan"), 0.5) == "nan +- 0.50"


def significant(text: str) -> int:
    digits = text.replace(".", "").lstrip("0")
    return len(digits)


def test_every_error_keeps_two_significant_digits():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        se = float(10.0 ** rng.uniform(-7, 4))
        value = float(rng.normal() * 10.0 ** rng.uniform(-3, 5))
        shown = format_estimate(value, se)
        v_text, se_text = shown.split(" +- ")
        assert significant(se_text) >= 2, (value, se, shown)
        assert float(se_text) == pytest.approx(se, rel=0.05 + 0.5 / max(se, 1)), shown
        places = len(se_text.split(".")[1]) if "." in se_text else 0
        assert places == se_decimals(se) and (len(v_text.split(".")[1]) if "." in v_text
                                              else 0) == places, shown
        assert abs(float(v_text) - value) <= 0.5 * 10.0 ** -places * (1 + 1e-9) + 1e-12 * abs(
            value), shown


def test_evaluate_table_shows_a_small_gap_error(capsys):
    """``pyrovae evaluate``'s table: the gap's 0.0033 shows, not 0.00; a missing error (one
    point) shows the value alone instead of failing."""
    result = {"split": "test", "num_points": 10, "nll_samples": 300,
              "test_nll": 88.3123, "test_nll_se": 0.57,
              "approximation_gap": 0.0123456, "approximation_gap_se": 0.0033,
              "amortization_gap": 1.2345, "amortization_gap_se": None}
    lines = format_table(result).splitlines()
    assert "NLL (K=300)           88.31 +- 0.57 nats" in lines
    assert "approximation gap     0.0123 +- 0.0033 nats" in lines
    assert "amortization gap      1.234 nats" in lines
    assert not any(re.search(r"\+- 0\.00(\s|$)", line) for line in lines)
