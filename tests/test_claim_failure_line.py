"""A claim that fails says the database's error without the row it quoted."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from passkeyd.delivery import Dispatcher


class _Diagnostic:
    message_primary = "new row violates check constraint"
    sqlstate = "23514"


class _RefusedRow(Exception):
    diag = _Diagnostic()


class _Refusing:
    def claim_deliveries(self, **_: Any) -> list[Any]:
        raise _RefusedRow("new row violates\nDETAIL:  Failing row contains (" + "s3cr3t)")


def test_a_failed_claims_line_quotes_no_row(caplog: pytest.LogCaptureFixture) -> None:
    sender = Dispatcher(store=_Refusing(), clock=lambda: 0, box=object())  # type: ignore[arg-type]
    sender._claim_traceback_now = lambda: False  # type: ignore[assignment,method-assign]

    async def main() -> None:
        with anyio.move_on_after(0.3):
            await sender.run_forever(0.05)

    with caplog.at_level(logging.ERROR, logger="passkeyd"):
        anyio.run(main)
    lines = [r.getMessage() for r in caplog.records if "claiming" in r.getMessage()]
    assert lines, caplog.text
    assert all("s3cr3t" not in line and "(SQLSTATE 23514)" in line for line in lines), lines
