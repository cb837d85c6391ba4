"""The one number format of what people read (engine.outputs.tables.fmt_number): never an
exponent; the lab (tui.fmt.number) is the same format with its trailing zeros kept."""

from __future__ import annotations

from engine.outputs.tables import fmt_number
from tui import fmt


def test_numbers_people_read_never_have_an_exponent():
    values = (0.0000123, 0.044, 5.0, 13.64, 99.96, 999.7, 12345.0, -0.000604)
    assert [fmt_number(v) for v in values] == ["0.0000123", "0.044", "5", "13.6", "100", "1000", "12,345", "-0.000604"]
    assert fmt_number(99.6, 2) == "100" and fmt_number(-26.7, 2) == "-27"  # '1e+02' and '-27' before
    assert [fmt.number(v) for v in (0.044, 5.0, 2.5)] == ["0.0440", "5.00", "2.50"]
    assert fmt_number(None) == fmt.number(None) == "-" and fmt_number(float("inf")) == "never"
