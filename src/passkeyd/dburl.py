"""The secrets in a PostgreSQL connection URL, found as libpq reads the URL, so that
nothing passkeyd shows of it (check-config, a connection error) holds one."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_plus

REDACTED = "<redacted>"

# libpq reads the user info of `postgresql://user:password@host/...` up to the first "@"
# before any "/": "#" and "?" are the password's, where urlsplit saw a fragment or a query.
# An unencoded "@" in a password puts its tail in the host, which libpq names in errors:
# shown, the span is taken up to the last "@" before the first "/".
_USER_INFO = re.compile(r"(?P<head>postgres(?:ql)?://[^:@/]*:)(?P<password>[^/]*)@", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&][^=&]*=)(?P<value>[^&]*)")


def _spans(url: str) -> list[tuple[int, int]]:
    """Where the URL writes a password: in its user info, and as the value of any query
    parameter whose name (decoded, as libpq decodes it) holds "password"."""
    spans = []
    match = _USER_INFO.match(url)
    rest = 0
    if match:
        spans.append(match.span("password"))
        rest = match.end()
    query = url.find("?", rest)
    if query >= 0:
        for param in _QUERY_PASSWORD.finditer(url, query):
            if "password" in unquote(param.group("key")).lower():
                spans.append(param.span("value"))
    return [(a, b) for a, b in spans if b > a]


def _secrets(url: str) -> set[str]:
    """Each password as written, and as libpq would read it (decoded, and cut at the first
    "@" of the user info)."""
    found: set[str] = set()
    for start, end in _spans(url):
        written = url[start:end]
        found.update((written, written.split("@", 1)[0]))
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 (libpq refuses it: what is written is all there is)
        params = {}
    for key, read in params.items():
        if "password" in key.lower():
            found.add(str(read))
        elif key == "host":
            found.update(h.rpartition("@")[0] for h in str(read).split(",") if "@" in h)
    return {s for s in found if s}


def without_secrets(text: str, url: str) -> str:
    """`text` (an error message) with every password `url` holds taken out, in each form it
    may be written."""
    forms: set[str] = set()
    for secret in _secrets(url):
        forms.update((secret, unquote(secret), unquote_plus(secret), quote(secret, safe="")))
    for form in sorted(filter(None, forms), key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def redacted_url(url: str) -> str:
    """A database URL as check-config shows it: its structure kept, each password replaced
    where it is written. A SQLite file name as given."""
    if url.startswith("sqlite:"):  # a file name, which no rebuilt URL may change
        return url
    shown = url
    for start, end in sorted(_spans(url), reverse=True):
        shown = shown[:start] + REDACTED + shown[end:]
    return shown
