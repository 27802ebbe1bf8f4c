"""The README's settings table against the settings the code reads: every number setting's
row gives the range the code enforces, and both ends of it are taken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from passkeyd.settings import ENVIRONMENT, Settings, SettingsError

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(PASSKEYD_[A-Z_]+)`(?:, `PASSKEYD_[A-Z_]+`)* \|(.*)$", re.MULTILINE)
RANGE = re.compile(r"whole number from (\d+) to (\d+)")


def rows() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in ROW.finditer(README.read_text())}


def enforced_range(name: str) -> tuple[int, int] | None:
    """The range the code refuses a non-number with, or None for a setting that is not a
    number (it took or refused the value for another reason)."""
    try:
        Settings.from_env({name: "not-a-number"})
    except SettingsError as exc:
        found = RANGE.search(str(exc))
        return (int(found.group(1)), int(found.group(2))) if found else None
    return None


def test_the_table_lists_every_setting_and_the_number_ones_are_found():
    assert set(ENVIRONMENT) - {"PASSKEYD_AUTH_TOKEN"} <= set(rows())  # (beside ACCOUNT_SID)
    numbers = {name for name in rows() if enforced_range(name)}
    # the check below covers the number settings; were none found, it would check nothing
    assert {"PASSKEYD_PORT", "PASSKEYD_WORKERS", "PASSKEYD_WEBHOOK_PER_ACCOUNT"} <= numbers
    assert len(numbers) >= 15


@pytest.mark.parametrize("name", [n for n in rows() if enforced_range(n)])
def test_a_number_settings_row_gives_the_range_the_code_enforces(name):
    low, high = enforced_range(name)  # type: ignore[misc]
    assert f"{low}–{high}" in rows()[name], f"README's {name} row lacks its range {low}–{high}"
    Settings.from_env({name: str(low)})
    Settings.from_env({name: str(high)})
    for outside in (low - 1, high + 1):
        with pytest.raises(
            SettingsError, match=f"{name} must be (a whole number )?from {low} to {high}"
        ):
            Settings.from_env({name: str(outside)})
