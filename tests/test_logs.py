"""Access-log lines are written in batches: held a moment, written at once before any
other line or a warning, on the server's timer, when many wait, and at exit."""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import subprocess
import sys
from typing import Any

import pytest

from passkeyd import logs


def handler_on(stream: io.StringIO) -> logs.BufferedStreamHandler:
    handler = logs.BufferedStreamHandler()
    handler.setStream(stream)
    handler.setFormatter(logs.JsonFormatter())
    return handler


def record(level: int, msg: str, name: str = "passkeyd.access") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_lines_wait_then_go_out_together_in_order() -> None:
    out = io.StringIO()
    h = handler_on(out)
    h.handle(record(logging.INFO, "first"))
    h.handle(record(logging.INFO, "second"))
    assert out.getvalue() == ""  # held
    h.handle(record(logging.WARNING, "trouble"))  # at once, after what waited
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == [
        "first",
        "second",
        "trouble",
    ]
    h.handle(record(logging.INFO, "an access line"))
    h.handle(record(logging.INFO, "Finished server process", name="uvicorn.error"))
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()][-2:] == [
        "an access line",
        "Finished server process",
    ]


def test_the_timer_flush_and_a_full_buffer_write_them_out() -> None:
    out = io.StringIO()
    h = handler_on(out)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [h]
    try:
        h.handle(record(logging.INFO, "waiting"))
        logs.flush()  # what the server's timer calls
        assert json.loads(out.getvalue())["msg"] == "waiting"
    finally:
        root.handlers[:] = saved
    out2 = io.StringIO()
    h2 = handler_on(out2)
    for i in range(logs.MAX_PENDING_LINES):
        h2.handle(record(logging.INFO, f"line {i}"))
    assert len(out2.getvalue().splitlines()) == logs.MAX_PENDING_LINES


def test_lines_still_waiting_are_written_at_exit() -> None:
    code = (
        "import logging; from passkeyd import logs; logs.configure('info', 'json');"
        " logging.getLogger('passkeyd.access').info('last words')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(done.stderr.strip())["msg"] == "last words"


@pytest.mark.parametrize(
    "fields",
    [
        {
            "request_id": "RQ" + "0" * 32,
            "method": "POST",
            "route": "approve_challenge",
            "status": 200,
            "duration_ms": 1.25,
            "account_sid": "AC" + "1" * 32,
            "code": 0,
        },
        {  # a path no route serves (app.http_error): the path was dropped by `format`
            "request_id": "RQ" + "0" * 32,
            "method": "GET",
            "route": "",
            "path": "/v2/Nowhere",
            "status": 404,
            "code": 20404,
        },
    ],
)
def test_the_access_fast_path_writes_what_the_logging_path_writes(fields) -> None:  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    fast, slow = io.StringIO(), io.StringIO()
    try:
        root.setLevel(logging.INFO)
        root.handlers[:] = [handler_on(fast)]
        logs.access("POST approve_challenge 200", fields)
        logs.flush()
        slow_handler = handler_on(slow)
        root.handlers[:] = [slow_handler, logging.NullHandler()]  # not the fast path's shape
        logs.access("POST approve_challenge 200", fields)
        slow_handler.flush()
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    made_fast, made_slow = json.loads(fast.getvalue()), json.loads(slow.getvalue())
    assert made_fast.pop("ts")[:16] == made_slow.pop("ts")[:16]
    assert (
        made_fast
        == made_slow
        == {
            "level": "info",
            "logger": "passkeyd.access",
            "msg": "POST approve_challenge 200",
            **fields,
        }
    )


def test_the_access_line_respects_the_level_and_the_records_path_keeps_working(caplog) -> None:  # type: ignore[no-untyped-def]
    access = logging.getLogger(logs.ACCESS_LOGGER)
    access.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.INFO):
            logs.access("POST create_challenge 201", {"status": 201})
        assert not [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    finally:
        access.setLevel(logging.NOTSET)
    with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):
        logs.access("POST create_challenge 201", {"status": 201})
    (record,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert record.getMessage() == "POST create_challenge 201" and record.status == 201  # type: ignore[attr-defined]


def test_a_handler_on_the_passkeyd_logger_still_gets_the_access_line() -> None:
    """The direct path is taken only when nothing between the access logger and the root
    would see the record."""
    root = logging.getLogger()
    parent = logging.getLogger("passkeyd")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    saved, level = root.handlers[:], root.level
    keep = Keep()
    try:
        root.setLevel(logging.INFO)
        root.handlers[:] = [handler_on(io.StringIO())]
        parent.addHandler(keep)
        logs.access("POST create_challenge 201", {"status": 201})
    finally:
        parent.removeHandler(keep)
        root.handlers[:] = saved
        root.setLevel(level)
    assert [r.getMessage() for r in seen] == ["POST create_challenge 201"]


def test_text_lines_show_control_characters_instead_of_sending_them_to_the_terminal() -> None:
    """A client's path reached an operator's terminal as escape sequences (text format,
    which `auto` picks on a terminal); a newline in it would start a forged line."""
    formatter = logs.TextFormatter("%(levelname)s %(name)s: %(message)s")
    event = record(logging.WARNING, "not found: %s", name="passkeyd.api")
    event.args = ("/x\x1b[2J\x1b[1;31mFAKE\r\nINFO passkeyd.api: ok\x9b",)
    event.route = "/y\x07"  # an extra field, as the access log's
    try:
        raise ValueError("kept as written")
    except ValueError:
        event.exc_info = sys.exc_info()
    first, *traceback = formatter.format(event).split("\n")
    assert first == (
        "WARNING passkeyd.api: not found: /x\\x1b[2J\\x1b[1;31mFAKE\\x0d\\x0a"
        "INFO passkeyd.api: ok\\x9b route=/y\\x07"
    )
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: kept as written"


def _shared_helper() -> None:
    raise RuntimeError("refused")  # as psycopg's cursor re-raises every server error


def _caught(call) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        call()
    except RuntimeError as exc:
        return exc
    raise AssertionError("not raised")


def _one_caller() -> None:
    _shared_helper()


def _another_caller() -> None:
    _shared_helper()


def test_an_error_raised_by_shared_code_for_two_callers_is_two_kinds() -> None:
    """The place of an unforeseen error is the path it came by: two statements refused by
    the database raise the same class from the driver's same line, and the second, from
    another store method (another bug), got no traceback for a minute."""
    seen = logs.Tracebacks(60.0)
    assert seen.logged_at(_caught(_one_caller), "RQ1") is None
    assert seen.logged_at(_caught(_another_caller), "RQ2") is None  # its own traceback
    # The same error by the same path again: the line naming the request that has it.
    assert seen.logged_at(_caught(_one_caller), "RQ3") == "RQ1"
    assert seen.logged_at(_caught(_another_caller), "RQ4") == "RQ2"


def test_no_row_a_database_refused_is_quoted_in_a_logged_traceback() -> None:
    """PostgreSQL's DETAIL quotes a refused row ("Failing row contains (...)"), and psycopg's
    text of the error includes it: a CHECK an operator added to `accounts` put a token's
    hash and its sealed token in the 500's traceback (diff review). A traceback keeps its
    frames, the error's class, primary message and SQLSTATE, also as the cause of another."""
    import psycopg

    from passkeyd.storage import StorageUnavailable
    from tests.pg import temporary_schema

    with temporary_schema() as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x text CHECK (length(x) < 5))")
        value = "secret-" + "value-42"  # (a traceback shows its frames' source lines)
        try:
            conn.execute("INSERT INTO t VALUES (%s)", (value,))
        except psycopg.errors.CheckViolation as exc:
            refused = exc
    assert "secret-value-42" in str(refused)  # what psycopg says
    try:
        raise StorageUnavailable("the write failed") from refused
    except StorageUnavailable as exc:
        chained = exc
    for formatter in (logs.JsonFormatter(), logs.TextFormatter("%(message)s")):
        for exc in (refused, chained):
            info = (type(exc), exc, exc.__traceback__)
            record = logging.LogRecord(
                "passkeyd.api", logging.ERROR, __file__, 1, "unhandled error", None, info
            )
            text = formatter.format(record)
            assert "secret-value-42" not in text, text
            assert "psycopg.errors.CheckViolation: new row for relation" in text.replace(
                "\\n", "\n"
            ), text
            assert "(SQLSTATE 23514)" in text and "test_logs.py" in text
    assert "secret-value-42" not in logs.exception_text(refused)
    # Anything else is said as it is, the same object formatted.
    plain = ValueError("a plain error")
    assert logs.exception_text(plain) == "a plain error"
    assert logs._stand_in(plain, {}) is plain


class _Diagnostic:
    message_primary = "new row violates check constraint"
    sqlstate = "23514"


class _RefusedRow(Exception):
    """As psycopg's error: its text quotes the row, its `diag` does not."""

    diag = _Diagnostic()


class _Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() fails")


class _DiagRaises(Exception):
    @property
    def diag(self) -> object:
        raise KeyError("no diagnostics")


def _formatted(exc: BaseException) -> list[str]:
    record = logging.LogRecord(
        "passkeyd.api", logging.ERROR, __file__, 1, "unhandled error", None,
        (type(exc), exc, exc.__traceback__),
    )  # fmt: skip
    formatters = (logs.JsonFormatter(), logs.TextFormatter("%(message)s"))
    return [f.format(record).replace("\\n", "\n") for f in formatters]


def _refused() -> _RefusedRow:
    return _RefusedRow(
        "new row violates check constraint\nDETAIL:  Failing row contains (" + "s3cr3t)"
    )


def test_no_row_is_quoted_by_a_database_error_in_a_group_or_a_looping_chain() -> None:
    try:
        raise ExceptionGroup("two writes failed", [ValueError("another" + " problem"), _refused()])
    except ExceptionGroup as exc:
        grouped = exc
    looped = ValueError("looped")
    refused = _refused()
    looped.__context__, refused.__context__ = refused, looped
    for logged in (grouped, looped):
        for text in _formatted(logged):
            assert "s3cr3t" not in text, text
            assert "(SQLSTATE 23514)" in text, text
    assert all("ValueError: another problem" in text for text in _formatted(grouped))


def test_an_exception_that_cannot_be_said_is_logged_not_raised_in_the_formatter() -> None:
    for odd in (_Unsayable(), _DiagRaises("said as it is")):
        try:
            try:
                raise _refused()
            except _RefusedRow as inner:
                raise odd from inner
        except Exception as exc:
            for text in _formatted(exc):
                assert "s3cr3t" not in text and "(SQLSTATE 23514)" in text, text
            assert logs.exception_text(exc) in ("<exception str() failed>", "said as it is")


class _Refusing:
    """A store whose claim is refused by the database."""

    def claim_deliveries(self, **_: Any) -> list[Any]:
        raise _RefusedRow("new row violates\nDETAIL:  Failing row contains (" + "s3cr3t)")


def test_a_failed_claims_line_quotes_no_row(caplog: pytest.LogCaptureFixture) -> None:
    """The webhook sender's line for a claim that fails said psycopg's whole text."""
    import anyio

    from passkeyd.delivery import Dispatcher

    sender = Dispatcher(store=_Refusing(), clock=lambda: 0, box=object())  # type: ignore[arg-type]
    sender._claim_traceback_now = lambda: False  # type: ignore[assignment,method-assign]

    async def main() -> None:
        with anyio.move_on_after(0.3):
            await sender.run_forever(0.05)

    # In a thread of its own: after the browser tests, Playwright keeps an event loop
    # running in the suite's main thread.
    with (
        caplog.at_level(logging.ERROR, logger="passkeyd"),
        concurrent.futures.ThreadPoolExecutor(1) as thread,
    ):
        thread.submit(anyio.run, main).result(timeout=30)
    lines = [r.getMessage() for r in caplog.records if "claiming" in r.getMessage()]
    assert lines, caplog.text
    assert all("s3cr3t" not in line and "(SQLSTATE 23514)" in line for line in lines), lines
