"""Reading request bodies and parameters: form (PascalCase) and JSON (snake or camel)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from passkeyd.digits import ascii_int
from passkeyd.domain.errors import InvalidPageSize, InvalidPageToken, InvalidParam, InvalidParameter
from passkeyd.domain.models import PageRequest

from .errors import HttpError

MAX_BODY_BYTES = 64 * 1024
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
_FORM = "application/x-www-form-urlencoded"
# PT<seq>: the records after seq (next page); PB<seq>: the records before it (previous page).
# A form value holding `;name=`, unencoded (an encoder writes `;` and `=` as %3B and %3D).
_SEMICOLON_FIELD = re.compile(rb"=[^=]*;[A-Za-z_][A-Za-z0-9_.]*=")


class Form:
    """A form-encoded body (or query string): every key keeps all its values."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            self._values.setdefault(key, []).append(value)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str) -> str | None:
        """A single-valued parameter. Given twice with different values it is refused (400
        60200), not taken from the last: which one a client meant (or a proxy appended) is
        not for passkeyd to guess. (Lists are read with `get_all`.)"""
        values = self._values.get(key)
        if not values:
            return None
        if len(values) > 1 and any(v != values[0] for v in values):
            raise InvalidParameter(_given_twice(key))
        return values[0]

    def items(self) -> list[tuple[str, str]]:
        return [(key, values[-1]) for key, values in self._values.items()]

    def get_all(self, key: str) -> list[str]:
        return self._values.get(key, [])

    def bool(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None:
            return None
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise InvalidParameter(f"Invalid parameter: {key} must be true or false")

    def int(self, key: str, low: int, high: int) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        number = ascii_int(value)
        if number is None or not low <= number <= high:
            raise InvalidParameter(f"Invalid parameter: {key} must be from {low} to {high}")
        return number


async def read_body(request: Request, *, code: int = 60200) -> bytes:
    length: str | None = None
    for name, value in request.scope["headers"]:  # one pass (Starlette's `headers` scans each)
        if name == b"content-encoding":
            encodings = value.decode("latin-1").split(",")
            if any(e.strip().lower() not in ("", "identity") for e in encodings):
                # A compressed body would be read as its compressed bytes: say so instead.
                raise HttpError(415, code, "Content-Encoding is not supported: send the body as is")
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1")
    if length is not None and (
        not (length.isascii() and length.isdigit())
        or len(length) > 12
        or int(length) > MAX_BODY_BYTES
    ):
        raise HttpError(413, 60300, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(413, 60300, f"Request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def header(scope: Any, name: bytes) -> str | None:
    """The first value of the header `name` (in lower case), as `request.headers.get` reads
    it, without making the request's Headers mapping first: about 9,000 instructions a
    request for its two header reads (the media type, and the Host of `Call.base`)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _media_type(request: Request) -> str:
    return (header(request.scope, b"content-type") or "").split(";", 1)[0].strip().lower()


_BOM = b"\xef\xbb\xbf"


def parse_form_bytes(raw: bytes) -> Form:
    try:
        text = raw.decode("utf-8")
        # Percent-escapes too (`%FF`): parse_qsl would store U+FFFD in their place.
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidParameter("Invalid parameter: the body is not UTF-8") from exc
    if "\x00" in text or ("%00" in text and any("\x00" in k + v for k, v in pairs)):
        raise InvalidParameter(NUL_REFUSED)
    return Form(pairs)


# No value may hold one: PostgreSQL's text cannot store it, and no identifier, name or URL
# needs it.
NUL_REFUSED = "Invalid parameter: a value contains a NUL character"


def _holds_nul(value: Any) -> bool:
    """Whether a NUL is in any string of `value`, however deep (without recursion: orjson
    reads JSON 1,024 levels deep, and a recursive walk ran out of stack at about 330)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


async def read_form(request: Request) -> Form:
    raw = await read_body(request)
    media = _media_type(request)
    if raw and media not in (_FORM, ""):
        raise HttpError(415, 60200, "Send this request as application/x-www-form-urlencoded")
    return parse_form_bytes(raw)


async def read_json(
    request: Request, *, code: int, form_fallback: bool, strict: bool = False
) -> dict[str, Any]:
    """A JSON object body.

    With `form_fallback`, a form body is read too: the async twilio SDK sends form
    bodies (labelled application/json) to the JSON endpoints. `strict` refuses what could
    lose a field on the way, rather than read the request without it: a key given twice
    with different values (a form's repeated key, a JSON object's duplicate member: which
    one was meant?), a form field without `=`, and a JSON body labelled a form (`curl -d`
    and urllib send one so), which reads as one field named after the whole text. Read
    without the field, `Identity=alice&Identity=` would be a usernameless challenge, which
    anyone's passkey answers.
    """
    raw = await read_body(request, code=code)
    if raw[:3] == _BOM:  # RFC 8259 §8.1: a parser may ignore one (orjson does not)
        raw = raw[3:]
    media = _media_type(request)
    is_json_type = media in ("application/json", "") or media.endswith("+json")
    # (`find`, not `in`: a bytes `in` first tries its operand as an integer, and on Python
    # 3.11 raises and formats a TypeError to learn it is none, about 2,000 instructions.)
    looks_form = raw.find(b"=") >= 0 and raw.lstrip()[:1] not in (b"{", b"[", b'"')
    if form_fallback and (media == _FORM or (is_json_type and looks_form)):
        form = parse_form_bytes(raw)
        if strict:
            _refuse_an_ambiguous_form(raw, form, code)
        return dict(form.items())
    if not is_json_type:
        raise HttpError(415, code, "Send this request as application/json")
    if looks_form and not form_fallback:
        # The async twilio SDK (aiohttp) form-encodes these bodies, which keeps only the
        # keys of a nested object: the credential's response never left the client.
        raise HttpError(
            400,
            code,
            "The request body is a form, not JSON: send the credential as a JSON object"
            " (the async twilio SDK form-encodes it and loses its response; use the sync"
            " client or post the JSON yourself)",
        )
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, code, "The request body is not valid JSON") from exc
    if strict and data and raw.count(b":") != _members(data):
        # orjson keeps a duplicate member's last value, and cannot say there was one. Each
        # member has a colon outside strings: as many colons as members read, and there
        # was none. Otherwise (a duplicate, or a colon in a string) the standard library
        # reads it again, and can say.
        try:
            _STRICT_DECODER.decode(raw.decode("utf-8"))  # (orjson checked the UTF-8)
        except _Duplicate as exc:
            raise HttpError(400, code, _given_twice(str(exc))) from exc
        except RecursionError as exc:  # deeper than the standard library goes (orjson: 1024)
            raise HttpError(400, code, "The request body is nested too deeply") from exc
    if data == []:  # twilio-php sends a request without fields so (json_encode([]))
        data = {}
    if not isinstance(data, dict):
        raise HttpError(400, code, "The request body must be a JSON object")
    if raw.find(b"\\u0000") >= 0 and _holds_nul(data):  # (the scan only when it may)
        raise HttpError(400, code, NUL_REFUSED)
    return data


def _refuse_an_ambiguous_form(raw: bytes, form: Form, code: int) -> None:
    """`read_json`'s strict reading of a form body: one value per key, a value for every
    field, and no JSON in it."""
    for key, _ in form.items():
        if len(set(form.get_all(key))) > 1:
            # (The async twilio SDK form-encodes a nested object as its keys.)
            raise HttpError(
                400,
                code,
                _given_twice(key) + " (a form cannot hold an object: send JSON; the"
                " async twilio SDK sends forms, the sync client JSON)",
            )
    if raw.lstrip()[:1] == b"{":  # curl -d, urllib: a JSON body labelled a form
        raise HttpError(
            400, code, "The request body is JSON sent as a form: send it as application/json"
        )
    fields = raw.split(b"&")
    if any(field.strip() and b"=" not in field for field in fields):
        # `Identity` alone: an empty value, or a value lost?
        raise HttpError(400, code, "Invalid parameter: a form field without a value")
    if any(_SEMICOLON_FIELD.search(field) for field in fields):
        # `friendly_name=a;identity=alice`: `;` once separated fields (HTML 4), and no longer
        # does; read as one value, the identity is lost and a new user made.
        raise HttpError(
            400, code, "Invalid parameter: fields separated by ';': separate them with '&'"
        )


def _given_twice(key: str) -> str:
    return f"Invalid parameter: {key[:100]!r} is given twice, with different values"


class _Duplicate(Exception):
    """A JSON object's member given twice with different values (its key the message)."""


def _one_value_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise _Duplicate(key)
        out[key] = value
    return out


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_one_value_each)


def _members(value: Any) -> int:
    """How many object members a parsed JSON value holds, at every depth (without
    recursion: orjson reads 1,024 levels, deeper than Python's stack goes)."""
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            pending.extend(v for v in item if isinstance(v, dict | list))
    return count


@functools.cache
def spellings(snake: str) -> tuple[str, str, str]:
    """A field's names: snake_case, its camelCase alias (twilio-node sends those), and
    PascalCase, as Twilio's form parameters are written (`Identity`, `FactorSid`)."""
    head, *rest = snake.split("_")
    camel = head + "".join(w.title() for w in rest)
    return snake, camel, camel[:1].upper() + camel[1:]


def pick(data: dict[str, Any], snake: str) -> Any:
    """A field, under any of its `spellings`: a request written by hand must not lose its
    fields (a challenge for `Identity` would otherwise be a usernameless one, which
    anyone's passkey answers). A spelling that is null or "" gives way to one with a value
    (`{"identity": null, "Identity": "alice"}` is for alice); two with different values are
    refused (InvalidParam, 60300)."""
    empty: Any = None
    given: Any = None
    found = False
    for key in spellings(snake):
        if key not in data:
            continue
        value = data[key]
        if value is None or value == "":
            if empty is None:
                empty = value
        elif not found:
            given, found = value, True
        elif _differ(value, given):
            raise InvalidParam(_given_twice(snake))
    return given if found else empty


def _differ(value: Any, given: Any) -> bool:
    """`value != given`, for values orjson read: it reads 1,024 levels of nesting, deeper
    than Python's comparison goes (a RecursionError, a 500)."""
    try:
        return bool(value != given)
    except RecursionError as exc:
        raise InvalidParam("Invalid parameter: the request body is nested too deeply") from exc


def page_request(
    query: Form,
    *,
    descending: bool = False,
    read_token: Callable[[str], tuple[str, int]] | None = None,
) -> tuple[PageRequest, int]:
    """(PageRequest, page number) from PageSize, Page and PageToken; `read_token` turns a
    token into its direction (T after, B before) and position, or raises InvalidPageToken."""
    size_text = query.get("PageSize")
    page_size = DEFAULT_PAGE_SIZE
    if size_text is not None:
        size = ascii_int(size_text, max_digits=100)  # any size over the most is the most
        if (
            size is None
            and size_text[:1] == "-"
            and ascii_int(size_text[1:], max_digits=100) is not None
        ):
            raise InvalidPageSize("Invalid page size: PageSize must be at least 1")
        if size is None:
            raise InvalidPageSize("Invalid page size: PageSize must be an integer")
        page_size = size
        if page_size < 1:
            raise InvalidPageSize("Invalid page size: PageSize must be at least 1")
        page_size = min(page_size, MAX_PAGE_SIZE)
    # Page is "simply for client state": any non-number reads as 0.
    page_number = ascii_int(query.get("Page") or "0", max_digits=9) or 0
    token = query.get("PageToken")
    after = before = None
    if token:
        if read_token is None:
            raise InvalidPageToken("Invalid page token")
        direction, seq = read_token(token)
        if direction == "T":
            after = seq
        else:
            before = seq
    request = PageRequest(page_size=page_size, after=after, descending=descending, before=before)
    return request, page_number
