"""The secrets in a PostgreSQL connection URL, found as libpq reads the URL, so that
nothing passkeyd shows of it (check-config, a connection error) holds one."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_plus

REDACTED = "<redacted>"

# libpq reads the user info of `postgresql://user:password@host/...` up to the first "@"
# before any "/": "#" and "?" are the password's, where urlsplit saw a fragment or a query.
# An unencoded "@" in a password puts its tail in the host, which libpq names in errors:
# shown, the span is taken up to the last "@" before the first "/". An unencoded "/" in it
# (base64 has them) ends libpq's user info early: then up to the last "@" of all.
_USER_INFO = re.compile(r"postgres(?:ql)?://[^:@/]*:(?P<password>[^/]*)@", re.I)
_USER_INFO_WITH_SLASH = re.compile(r"postgres(?:ql)?://[^:@/]*:(?P<password>.*)@", re.I)


def _secret_key(key: str) -> bool:
    """A connection parameter whose value is a secret: password, sslpassword,
    oauth_client_secret, scram_client_key, scram_server_key."""
    key = key.lower()
    return "password" in key or "secret" in key or key.startswith("scram_")


def _keywords() -> frozenset[str]:
    """The connection parameters libpq knows: a query parameter named otherwise is part of
    the value before it (an unencoded "&" in a password)."""
    try:
        import psycopg

        return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())
    except Exception:  # noqa: BLE001 (no libpq to ask: every name counts as known)
        return frozenset()


def _spans(url: str) -> list[tuple[int, int]]:
    """Where the URL writes a secret: its user info's password, and the value of each
    query parameter that holds one (named as libpq decodes the name), up to the next "&"
    that begins a parameter libpq knows."""
    spans = []
    match = _USER_INFO.match(url) or _USER_INFO_WITH_SLASH.match(url)
    rest = 0
    if match:
        spans.append(match.span("password"))
        rest = match.end()
    query = url.find("?", rest)
    if query >= 0:
        known = _keywords()
        start = None  # where the secret value being read began
        position = query + 1
        for param in url[query + 1 :].split("&"):
            name, equals, _ = param.partition("=")
            name = unquote(name)
            if start is not None and (not known or (equals and name in known)):
                spans.append((start, position - 1))
                start = None
            if start is None and equals and _secret_key(name):
                start = position + len(param.partition("=")[0]) + 1
            position += len(param) + 1
        if start is not None:
            spans.append((start, len(url)))
    return [(a, b) for a, b in spans if b > a]


_CUTS = re.compile(r"[/?&=@#:]")


def _pieces(written: str) -> set[str]:
    """A secret as written, and each part of it between the characters where libpq cuts a
    URL it misreads ("/", "?", "&", "=", "@", "#", ":"), which its errors quote apart
    (`invalid URI query parameter: "BRAVO"`). Parts under 3 characters are left: replacing
    them everywhere would leave nothing of a message."""
    cuts = [0, *(m.start() for m in _CUTS.finditer(written)), len(written)]
    pieces = {written}
    for i, a in enumerate(cuts):
        for b in cuts[i + 1 :]:
            piece = written[a:b].strip("/?&=@#:")
            if len(piece) >= 3:
                pieces.add(piece)
    return pieces


def _secrets(url: str) -> set[str]:
    """Each password as written (and its parts), and as libpq would read it (decoded)."""
    found: set[str] = set()
    for start, end in _spans(url):
        found.update(_pieces(url[start:end]))
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
