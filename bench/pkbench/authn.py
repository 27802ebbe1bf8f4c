"""The browser side of the ceremonies, built on the test suite's software authenticator.

Assertions go through `tests.authenticator.Authenticator.get` unchanged (they need the
server's challenge, so the signature is made inside the timed loop). Registrations use the
same building blocks, but with ES256 keys generated before the timed loop: with `none`
attestation nothing is signed, so a registration costs the client only some encoding.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

import cbor2
import orjson

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.authenticator import (  # noqa: E402 - after the sys.path entry above
    AAGUID,
    AT,
    BE,
    BS,
    ES256,
    UP,
    UV,
    Authenticator,
    Key,
    StoredCredential,
    b64url,
    unb64url,
)

ORIGIN = "https://example.com"
RP_ID = "example.com"
RP_NAME = "Example"

__all__ = ["ORIGIN", "RP_ID", "RP_NAME", "Authenticator", "KeyPool", "b64url", "unb64url"]


class KeyPool:
    """ES256 keys made before the timed loop, each with its COSE encoding, used in turn.

    Credential ids are fresh random bytes for every registration, so reusing a key pair
    across registrations is invisible to a relying party.
    """

    def __init__(self, size: int = 64, rp_id: str = RP_ID) -> None:
        self._keys = [Key.generate(ES256) for _ in range(size)]
        self._cose = [k.cose() for k in self._keys]
        self._next = 0
        self._rp_hash = hashlib.sha256(rp_id.encode()).digest()
        self._flags = bytes([UP | UV | BE | BS | AT])

    def create(self, options: dict[str, Any], origin: str = ORIGIN) -> dict[str, Any]:
        """What `navigator.credentials.create(options)` + `toJSON()` give, `none` attestation."""
        pk = options.get("publicKey", options)
        i = self._next = (self._next + 1) % len(self._keys)
        credential_id = os.urandom(32)
        client_data = orjson.dumps(
            {"type": "webauthn.create", "challenge": pk["challenge"], "origin": origin}
        )
        auth_data = b"".join(
            (
                self._rp_hash,
                self._flags,
                struct.pack(">I", 0),
                AAGUID,
                struct.pack(">H", len(credential_id)),
                credential_id,
                self._cose[i],
            )
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        ident = b64url(credential_id)
        return {
            "id": ident,
            "rawId": ident,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
        }


def holder_of(key: Key, credential_id: bytes, user_handle: bytes) -> Authenticator:
    """An authenticator holding one known credential (e.g. one seeded straight into a DB)."""
    auth = Authenticator()
    auth.credentials[credential_id] = StoredCredential(credential_id, key, RP_ID, user_handle)
    return auth
