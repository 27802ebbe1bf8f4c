"""The secrets in a PostgreSQL connection URL, found as libpq reads the URL, so that
nothing passkeyd shows of it (check-config, a connection error) holds one."""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus, urlsplit

REDACTED = "<redacted>"


def _secrets(url: str) -> set[str]:
    found: set[str] = set()
    try:  # as written, which libpq quotes in some errors ('invalid percent-encoded token')
        parts = urlsplit(url)
        found.add(parts.password or "")
        for field in parts.query.split("&"):
            name, _, value = field.partition("=")
            if "password" in unquote(name).lower():
                found.add(value)
    except ValueError:
        pass
    try:
        # As libpq reads it, which urlsplit does not: the user info ends at the first "@",
        # so "#" and "?" may be in a password, and an unencoded "@" puts the password's tail
        # in the host; and `pass%77ord=` is a password parameter.
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 (libpq refuses it: what urlsplit found is all there is)
        params = {}
    for key, read in params.items():
        if "password" in key.lower():
            found.add(str(read))
        elif key == "host":
            found.update(h.rpartition("@")[0] for h in str(read).split(",") if "@" in h)
    return {s for s in found if s}


def without_secrets(text: str, url: str) -> str:
    """`text` with every password `url` holds taken out, in each form it may be written."""
    forms: set[str] = set()
    for secret in _secrets(url):
        forms.update((secret, unquote(secret), unquote_plus(secret), quote(secret, safe="")))
    for form in sorted(filter(None, forms), key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def redacted_url(url: str) -> str:
    """A database URL as check-config shows it: a SQLite file name as given."""
    if url.startswith("sqlite:"):  # a file name, which no rebuilt URL may change
        return url
    return without_secrets(url, url)
