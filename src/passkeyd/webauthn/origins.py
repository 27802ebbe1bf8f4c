"""Which `clientDataJSON.origin` values a relying party accepts."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

_LOCALHOST_DEV = re.compile(r"^http://localhost(:[0-9]{1,5})?$")


def normalise_origin(configured: str) -> str:
    """The exact origin string a configured value stands for.

    A value with a scheme (`https://a.example`, `http://localhost:8080`) or an app origin
    (`android:apk-key-hash:...`, `ios:bundle-id:...`) is kept verbatim, less a trailing
    slash on web origins. A bare host (`example.com`) means `https://example.com`.
    """
    value = configured.strip()
    if "://" in value:
        return value.rstrip("/")
    if ":" in value and not re.match(r"^[A-Za-z0-9.-]+:[0-9]+$", value):
        return value  # an app origin such as android:apk-key-hash:...
    return f"https://{value}"


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
        return self.allow_localhost_http and bool(_LOCALHOST_DEV.match(origin))

    def accepts_top(self, top_origin: str) -> bool:
        return top_origin in self.top_origins


@functools.lru_cache(maxsize=1024)
def _built(rp_id: str, origins: tuple[str, ...], top_origins: tuple[str, ...]) -> OriginPolicy:
    """Policies are immutable and few (one per relying-party configuration): each is
    normalised once, not on every assertion."""
    return OriginPolicy(
        exact=frozenset(normalise_origin(o) for o in origins if o.strip()),
        allow_localhost_http=rp_id == "localhost",
        top_origins=frozenset(normalise_origin(o) for o in top_origins if o.strip()),
    )


def related_origins(origins: Iterable[str]) -> list[str]:
    """The `origins` of a `/.well-known/webauthn` document (Related Origin Requests): the
    web origins among a service's, normalised, in order, without app origins."""
    out: dict[str, None] = {}
    for configured in origins:
        origin = normalise_origin(configured)
        if origin.startswith(("https://", "http://localhost")):
            out.setdefault(origin)
    return list(out)
