"""Logging: JSON lines (one object per line) or readable text on a terminal.

Request fields (request_id, method, route, path, status, duration_ms, account_sid, code) ride on the
record's `extra`. Nothing secret is ever passed to a logger: no Authorization header, no
body, no token, no credential material.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from typing import Any

import orjson

# Every field an access line may carry (`path` only for a path no route serves).
FIELDS = (
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "account_sid",
    "code",
)


def _database_text(exc: BaseException) -> str | None:
    """A database error's primary message and SQLSTATE (None: not a database's error, or
    one whose diagnostics cannot be read)."""
    try:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        if isinstance(primary, str):
            return f"{primary} (SQLSTATE {getattr(diag, 'sqlstate', None) or '?'})"
    except Exception:  # (a `diag` that raises: said as anything else is)
        return None
    return None


def _plain_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # as the traceback module says it
        return "<exception str() failed>"


def exception_text(exc: BaseException) -> str:
    """What an exception says, without what a database quoted of its rows: PostgreSQL's
    DETAIL and CONTEXT (which psycopg's text includes) give a refused row's values ("Failing
    row contains (...)": a token's hash, a sealed token). Its primary message and SQLSTATE
    name the problem. Never raises (an exception whose str() fails is said so)."""
    text = _database_text(exc)
    return _plain_text(exc) if text is None else text


def _stand_in(
    exc: BaseException | None,
    done: dict[int, BaseException | None],
    active: set[int] | None = None,
) -> BaseException | None:
    """`exc`, or where it, an exception it was raised from, or one it groups is a
    database's error, a copy of it (same class name, module, traceback, notes, chain and
    group) whose text is `exception_text`. A chain that loops back is cut where it does
    (a traceback shows each exception once anyway), so no original is reached again."""
    if exc is None:
        return None
    if id(exc) in done:
        return done[id(exc)]
    active = set() if active is None else active
    if id(exc) in active:
        return None
    active.add(id(exc))
    cause = _stand_in(exc.__cause__, done, active)
    context = _stand_in(exc.__context__, done, active)
    grouped: tuple[BaseException, ...] | None = getattr(exc, "exceptions", None)
    members: list[BaseException] | None = None
    if isinstance(exc, BaseExceptionGroup) and grouped is not None:
        members = [m for m in (_stand_in(e, done, active) for e in grouped) if m is not None]
    active.discard(id(exc))
    own = _database_text(exc)
    if (
        own is None
        and cause is exc.__cause__
        and context is exc.__context__
        and (members is None or members == list(grouped or ()))
    ):
        done[id(exc)] = exc
        return exc
    kind = type(exc)
    attrs = {"__module__": kind.__module__, "__qualname__": kind.__qualname__}
    copy: BaseException
    if members:  # (BaseExceptionGroup holds any exception; its text adds the count)
        text = own if own is not None else str(getattr(exc, "message", ""))
        copy = type(kind.__name__, (BaseExceptionGroup,), attrs)(text, members)
    else:
        copy = type(kind.__name__, (Exception,), attrs)(
            own if own is not None else _plain_text(exc)
        )
    copy.__traceback__ = exc.__traceback__
    copy.__cause__, copy.__context__ = cause, context
    copy.__suppress_context__ = exc.__suppress_context__
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        copy.__notes__ = list(notes)
    done[id(exc)] = copy
    return copy


def _format_exception(formatter: logging.Formatter, ei: Any) -> str:
    exc = _stand_in(ei[1], {}) if ei and ei[1] is not None else None
    if exc is None or exc is ei[1]:
        return logging.Formatter.formatException(formatter, ei)
    return logging.Formatter.formatException(formatter, (type(exc), exc, exc.__traceback__))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the timestamp prefix is cached per second (this runs for
    every request)."""

    _cached: tuple[int, str] = (-1, "")  # (second, its prefix): one tuple, thread-safe

    def timestamp(self, created: float) -> str:
        second = int(created)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        millis = int((created - second) * 1000)
        return f"{prefix}.{_MILLISECONDS[millis] if millis >= 0 else f'{millis:03d}'}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return _format_exception(self, ei)

    def access_line(self, msg: str, fields: dict[str, Any]) -> str:
        """What `format` makes of an INFO record of the access logger with these fields,
        made without the record."""
        entry = {
            "ts": self.timestamp(time.time()),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": msg,
            **fields,
        }
        return orjson.dumps(entry, default=str).decode()


ACCESS_LOGGER = "passkeyd.access"
# A timestamp's milliseconds as `:03d` writes them (parsing its format spec each time: half
# of the line's timestamp).
_MILLISECONDS = tuple(f"{n:03d}" for n in range(1000))


class Every:
    """True at most once every `seconds`: a failure that every request meets (a database
    gone, a full disk) gets its traceback logged that often, and a line otherwise, not a
    traceback per request (megabytes a second, on the disk that may be full)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -seconds

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


class Throttle:
    """For a line that every request may repeat (a full disk, a database gone): at most one
    every `seconds`, which says how many were held back since the last. (10,000 lines in
    35 s filled what was left of a disk that was full.)"""

    def __init__(self, seconds: float) -> None:
        self._every = Every(seconds)
        self._held = 0

    def __call__(self) -> str | None:
        """None: hold this line back. Else a suffix for it ("" or " (N more since)")."""
        if not self._every():
            self._held += 1
            return None
        held, self._held = self._held, 0
        return f" ({held} more since)" if held else ""


class Tracebacks:
    """For errors nobody foresaw (a 500): the traceback of each kind, raised at the same
    place, is logged once every `seconds`; a request meeting it again meanwhile gets a line
    naming the request whose log has it. (A trigger an operator added that refuses every
    write logged a 40-line traceback per request.)"""

    MAX_KINDS = 256

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._logged: dict[tuple[str, tuple[tuple[str, int], ...]], tuple[float, str]] = {}

    def logged_at(self, exc: BaseException, request_id: str) -> str | None:
        """None: log this one's traceback (`request_id`'s). Else the request id whose log
        line holds the traceback of the same error, logged under `seconds` ago.

        The place is the whole path the error came by, not its innermost frame: that one is
        often shared by every caller (psycopg re-raises each server error from its cursor's
        execute, so every trigger's or constraint's refusal would be one kind)."""
        where: list[tuple[str, int]] = []
        tb = exc.__traceback__
        while tb is not None:
            where.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
            tb = tb.tb_next
        kind = (f"{type(exc).__module__}.{type(exc).__qualname__}", tuple(where))
        now = time.monotonic()
        found = self._logged.get(kind)
        if found is not None and now - found[0] < self.seconds:
            return found[1]
        if len(self._logged) >= self.MAX_KINDS:
            self._logged.clear()
        self._logged[kind] = (now, request_id)
        return None


def new_request_id() -> str:
    """A response's Twilio-Request-Id, which its log lines carry: `RQ` and 32 hex digits.

    Unique, not secret (it is sent to the client and logged), so it comes from `random`,
    which the standard library seeds from the OS and reseeds in a forked child, rather
    than from the OS on every request: a system call each, a tenth of a request's
    bookkeeping."""
    return "RQ" + random.getrandbits(128).to_bytes(16, "big").hex()  # (`:032x` parses its spec)


FLUSH_SECONDS = 0.2
MAX_PENDING_LINES = 256


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes access-log lines (one per request) in batches rather than one write each:
    such a line waits at most FLUSH_SECONDS (the server flushes on a timer too); any other
    line goes out at once, after what waited before it; and everything is written at exit.
    A process killed outright loses at most FLUSH_SECONDS of access-log lines."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._flushed = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line + self.terminator)
        if (
            record.name != ACCESS_LOGGER  # only the access log waits: other lines are rare
            or record.levelno >= logging.WARNING
            or len(self._pending) >= MAX_PENDING_LINES
            or time.monotonic() - self._flushed >= FLUSH_SECONDS
        ):
            self.flush()

    def add_access_line(self, line: str) -> None:
        """An access-log line formatted by `access`: held like any other (under the
        handler's lock, as `handle` holds it around `emit`)."""
        with self.lock:  # type: ignore[union-attr]  # (what acquire() takes: made in __init__)
            self._pending.append(line + self.terminator)
            if (
                len(self._pending) >= MAX_PENDING_LINES
                or time.monotonic() - self._flushed >= FLUSH_SECONDS
            ):
                self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._flushed = time.monotonic()
            if self._pending:
                text, self._pending = "".join(self._pending), []
                try:
                    self.stream.write(text)
                except Exception:  # a closed or broken stream: as logging does, go on
                    return
            super().flush()
        finally:
            self.release()


_access = logging.getLogger(ACCESS_LOGGER)
_root = logging.getLogger()


def access(msg: str, fields: dict[str, Any]) -> None:
    """Log one request's line (INFO, the access logger, `fields` as its extra).

    This runs for every request, and a LogRecord with its handler chain costs more than the
    rest of a request's bookkeeping. So when the line would reach nothing but the JSON
    handler that `configure` installed, it is formatted and queued directly, the same line
    byte for byte; otherwise (text format, tests capturing records, filters, handlers
    added) it goes through `logging` as usual."""
    if not _access.isEnabledFor(logging.INFO):
        return
    handlers = _root.handlers
    if (
        len(handlers) == 1
        and type(handler := handlers[0]) is BufferedStreamHandler
        and type(formatter := handler.formatter) is JsonFormatter
        and not (_root.filters or handler.filters)
        and handler.level <= logging.INFO
        and _plain_path_to_root()
    ):
        handler.add_access_line(formatter.access_line(msg, fields))
        return
    _access.info(msg, extra=fields)


def _plain_path_to_root() -> bool:
    """The access logger and every logger between it and the root ("passkeyd") have no
    handlers or filters of their own and propagate."""
    logger: logging.Logger | None = _access
    while logger is not None and logger is not _root:
        if logger.handlers or logger.filters or not logger.propagate:
            return False
        logger = logger.parent
    return True


def flush() -> None:
    """Write out what the root logger's handlers hold (the server calls this on a timer)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


# Control characters (C0 but tab, DEL, C1): a client's path or header in a text line must not
# reach an operator's terminal as escape sequences, nor start a line of its own.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class TextFormatter(logging.Formatter):
    """One line per event for a terminal, with what came from outside made visible (JSON
    lines escape it anyway). A traceback follows on lines of its own, as written."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = _visible(super().formatMessage(record))
        extras = " ".join(
            f"{n}={_visible(str(getattr(record, n)))}" for n in FIELDS if hasattr(record, n)
        )
        return f"{line} {extras}" if extras else line

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return _format_exception(self, ei)


class _NoParserWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Invalid HTTP request received."


def configure(level: str, fmt: str) -> None:
    """`fmt` is json, text, or auto (text on a terminal, JSON otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = BufferedStreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # A request the HTTP parser refuses has its access line (httpproto), with its request
    # id; uvicorn's warning for it named none, at WARNING, once per refused request.
    if not any(isinstance(f, _NoParserWarning) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(_NoParserWarning())
    # passkeyd logs each request itself (with its request id); uvicorn's line would double it.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
