"""Which `clientDataJSON.origin` values a relying party accepts."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

_LOCALHOST_DEV = re.compile(r"^http://localhost(:[0-9]{1,5})?$")
# A localhost origin a service names as its own app's, written with its scheme (any port,
# the default one too: an app at https://localhost behind a local proxy is one).
_LOCALHOST_APP = re.compile(r"^https?://localhost(:[0-9]{1,5})?$")


def _names_local_app(configured: str) -> bool:
    """Whether a configured origin names a local app's own origin. Decided on the entry as
    written, not as normalised: a bare `localhost` (or `localhost:3000`, as Twilio's
    scheme-less examples write one) reads as https, though it was not written so, and keeps
    the development fallback it always kept; `https://localhost` says which app it is."""
    value = configured.strip()
    return "://" in value and bool(_LOCALHOST_APP.fullmatch(normalise_origin(value)))


_DEFAULT_PORTS = {"https": 443, "http": 80}
_APK_KEY_HASH = "android:apk-key-hash:"
# Schemes of URLs that are never a page's origin.
_NO_PAGE_SCHEMES = frozenset({"ws", "wss", "ftp", "file", "data", "javascript", "blob", "about"})


def normalise_origin(configured: str) -> str:
    """The origin string a browser (or app) sends for a configured value, which is matched
    exactly (§7.1 step 9 compares origins, serialised as RFC 6454 says).

    A web origin is serialised: scheme and host in lower case, no default port, no path
    (`HTTPS://Example.com:443/login` is `https://example.com`). A bare host (`example.com`)
    means `https://example.com`. An Android app origin takes the form Android sends, the
    SHA-256 of the signing certificate in base64url without padding, from that, standard
    base64, or the colon-separated hex of Digital Asset Links. Any other app origin
    (`ios:bundle-id:...`) is kept verbatim.
    """
    value = configured.strip()
    if _is_app_origin(value):
        return _app_origin(value)
    if "://" not in value:
        value = f"https://{value}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value.rstrip("/")  # not a URL: matches nothing a browser sends
    scheme, host = parts.scheme.lower(), parts.hostname
    if not host:
        return value.rstrip("/")
    if ":" in host:  # IPv6, written as browsers serialise it (compressed, lower case)
        try:
            host = f"[{_ipv6_as_browsers_write_it(ipaddress.IPv6Address(host))}]"
        except ValueError:
            host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _ipv6_as_browsers_write_it(address: ipaddress.IPv6Address) -> str:
    """The URL Standard's IPv6 serializer: eight hex pieces without leading zeros, the first
    longest run of two or more zero pieces written `::`. Python's `compressed` wrote the same
    until 3.13, which writes an IPv4-mapped address's last 32 bits as IPv4
    (`::ffff:127.0.0.1`); browsers send `[::ffff:7f00:1]`."""
    pieces = [(address.packed[i] << 8) | address.packed[i + 1] for i in range(0, 16, 2)]
    run_start, run_length, start = -1, 1, -1
    for i, piece in enumerate([*pieces, 1]):  # (the 1 ends a run of zeros at the end)
        if piece == 0 and start < 0:
            start = i
        elif piece != 0 and start >= 0:
            if i - start > run_length:
                run_start, run_length = start, i - start
            start = -1
    words = [f"{piece:x}" for piece in pieces]
    text = (
        ":".join(words)
        if run_start < 0
        else ":".join(words[:run_start]) + "::" + ":".join(words[run_start + run_length :])
    )
    return f"{text}%{address.scope_id}" if address.scope_id else text


_HOST = re.compile(r"^[A-Za-z0-9_.-]+$")


def origin_problem(configured: str) -> str | None:
    """Why a configured origin could never match what a browser or app sends, or None.

    A web origin needs a host a browser can serialise (ASCII letters, digits, `-`, `_`,
    `.`, or a bracketed IPv6 address; a Unicode host is sent as its punycode A-label), a
    port from 1 to 65535, and a scheme a page can have. Written without a scheme, it is a
    host (and port) alone. An app origin (`android:apk-key-hash:...`, `ios:bundle-id:...`)
    is taken as given (an Android fingerprint that is not a SHA-256 is kept verbatim).
    """
    value = configured.strip()
    lowered = value.lower()
    if lowered.startswith(("http:", "https:")) and "://" not in value:
        return "lacks the // after its scheme"
    if _is_app_origin(value):
        return None
    if "://" not in value:
        if "/" in value.rstrip("/") or "?" in value or "#" in value:
            return "has a path but no scheme (write https://...)"
        value = f"https://{value}"
    elif lowered.split("://", 1)[0] in _NO_PAGE_SCHEMES:
        return "has a scheme no page has (a WebAuthn origin is a page's)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "is not a URL (a bad port or IPv6 address)"
    host = parts.hostname
    if not parts.scheme or not host:
        return "has no scheme and host"
    if parts.netloc.startswith("[") or ":" in host:
        if "%" in host:
            return "has an IPv6 zone id, which browsers do not send"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "has a malformed IPv6 address"
    elif not _HOST.fullmatch(host):
        return "has a host a browser would not send (a Unicode host goes as punycode)"
    elif ipv4_label(host.rstrip(".").rsplit(".", 1)[-1]) and not _dotted_quad(host):
        # The URL parser reads it as an IPv4 address and sends it as a.b.c.d.
        return "is an IPv4 address not written as a browser sends it (a.b.c.d)"
    if port == 0:
        return "has port 0"
    return None


def _is_app_origin(value: str) -> bool:
    """`android:apk-key-hash:...`, `ios:bundle-id:...`: a scheme, but not a web origin
    written without its scheme (`host:port`, `[IPv6]:port`, with or without a path)."""
    return "://" not in value and ":" in value and not _SCHEMELESS_WEB.fullmatch(value)


# A host (or a bracketed IPv6 address), perhaps a port, perhaps a path: `example.com:8443/`.
_SCHEMELESS_WEB = re.compile(r"^(?:\[[^\]/]*\]|[A-Za-z0-9_.-]+)(?::[0-9]+)?(?:[/?#].*)?$")


def ipv4_label(label: str) -> bool:
    """A host's last label that makes the URL parser read the host as an IPv4 address: a
    number, decimal or 0x-hex."""
    label = label.lower()
    return label.isdigit() or (
        label.startswith("0x") and all(c in "0123456789abcdef" for c in label[2:])
    )


def _dotted_quad(host: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def _app_origin(value: str) -> str:
    if not value.lower().startswith(_APK_KEY_HASH):
        return value
    fingerprint = value[len(_APK_KEY_HASH) :]
    digest: bytes | None = None
    if re.fullmatch(r"(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", fingerprint):
        digest = bytes.fromhex(fingerprint.replace(":", ""))
    else:
        try:
            digest = base64.urlsafe_b64decode(
                fingerprint.replace("+", "-").replace("/", "_") + "=" * (-len(fingerprint) % 4)
            )
        except (ValueError, binascii.Error):
            digest = None
    if digest is None or len(digest) != 32:  # not a SHA-256: as given
        return value
    return _APK_KEY_HASH + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The accepted origins of one relying party.

    Matching is exact. For development, when the RP id is `localhost`,
    `http://localhost` on any port is accepted too (browsers treat it as secure).
    `top_origins` are the pages allowed to embed a ceremony in a cross-origin iframe;
    with none, cross-origin ceremonies are refused.
    """

    exact: frozenset[str]
    allow_localhost_http: bool
    top_origins: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, *, rp_id: str, origins: Iterable[str], top_origins: Iterable[str] = ()
    ) -> OriginPolicy:
        return _built(rp_id, tuple(origins), tuple(top_origins))

    def accepts(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        return self.allow_localhost_http and bool(_LOCALHOST_DEV.fullmatch(origin))

    def accepts_top(self, top_origin: str) -> bool:
        return top_origin in self.top_origins


@functools.lru_cache(maxsize=1024)
def _built(rp_id: str, origins: tuple[str, ...], top_origins: tuple[str, ...]) -> OriginPolicy:
    """Policies are immutable and few (one per relying-party configuration): each is
    normalised once, not on every assertion."""
    exact = frozenset(normalise_origin(o) for o in origins if o.strip())
    return OriginPolicy(
        exact=exact,
        # For development, any port of http://localhost, unless the service names its own
        # localhost origins (http:// or https://localhost, any port): then those are the
        # ones it means (a different port is another origin, perhaps another app; and the
        # RP id `localhost` is every local app's, so the origin is what tells them apart).
        # A bare `localhost[:port]`, as Twilio's examples write an origin, names none.
        allow_localhost_http=rp_id == "localhost" and not any(_names_local_app(o) for o in origins),
        top_origins=frozenset(normalise_origin(o) for o in top_origins if o.strip()),
    )


def related_origins(origins: Iterable[str]) -> list[str]:
    """The `origins` of a `/.well-known/webauthn` document (Related Origin Requests): the
    web origins among a service's, normalised, in order, without app origins."""
    out: dict[str, None] = {}
    for configured in origins:
        origin = normalise_origin(configured)
        if origin.startswith("https://") or _LOCALHOST_DEV.fullmatch(origin):
            out.setdefault(origin)
    return list(out)
