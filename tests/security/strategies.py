"""Hypothesis strategies for hostile input: JSON and CBOR values, credential-shaped bodies,
byte mutations, and the valid ceremonies (from the software authenticator) they start from."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cbor2
from hypothesis import settings
from hypothesis import strategies as st

from passkeyd.webauthn import (
    DEFAULT_ALGORITHMS,
    OriginPolicy,
    RegisteredCredential,
    parse_registration,
    verify_registration,
)
from tests.authenticator import EDDSA, ES256, RS256, Authenticator, b64url, unb64url
from tests.conftest import ORIGIN

from .support import FUZZ

T = TypeVar("T")

RP_ID = "example.com"
CHALLENGE = bytes(range(32))
USER_HANDLE = b"YE" + b"0" * 32
POLICY = OriginPolicy.build(rp_id=RP_ID, origins=[ORIGIN])
SCALE = float(os.environ.get("PASSKEYD_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """`examples` inputs (times PASSKEYD_FUZZ_SCALE), no deadline, no example database."""
    return settings(FUZZ, max_examples=max(1, int(examples * SCALE)))


class Tally:
    """How many inputs a property saw, and the slowest one (a hang would show here)."""

    def __init__(self) -> None:
        self.count = 0
        self.slowest = 0.0
        self.slowest_input = ""

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.count += 1
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - started
            if took > self.slowest:
                self.slowest, self.slowest_input = took, repr((args, kwargs))[:160]


# --- values -----------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
CBOR = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=80)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-300, 300) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \t\n"
B64ISH = st.text(alphabet=B64_ALPHABET, max_size=80) | st.binary(max_size=60).map(b64url)
# A field a browser sends as base64url: usually that, sometimes anything at all.
FIELD = st.one_of(B64ISH, B64ISH, JSON)


def credential_bodies() -> st.SearchStrategy[Any]:
    """PublicKeyCredential.toJSON()-shaped objects whose every field may be anything."""
    response = st.fixed_dictionaries(
        {},
        optional={
            "clientDataJSON": FIELD | client_data_json().map(b64url),
            "attestationObject": FIELD | st.builds(cbor2.dumps, CBOR).map(b64url),
            "authenticatorData": FIELD,
            "signature": FIELD,
            "userHandle": FIELD,
            "transports": st.lists(st.sampled_from(["usb", "nfc", "internal", "x"]) | JSON) | JSON,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "id": FIELD,
            "rawId": FIELD | st.binary(max_size=40).map(bytes.hex),
            "keyId": FIELD,
            "type": st.just("public-key") | JSON,
            "authenticatorAttachment": st.sampled_from(["platform", "cross-platform"]) | JSON,
            "response": response | JSON,
            "clientExtensionResults": JSON,
        },
    )


def client_data_json() -> st.SearchStrategy[bytes]:
    """clientDataJSON bytes: a JSON object with the expected keys holding any JSON values."""
    values = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["webauthn.create", "webauthn.get"]) | JSON,
            "challenge": B64ISH | JSON,
            "origin": st.just(ORIGIN) | JSON,
            "crossOrigin": st.booleans() | JSON,
            "topOrigin": st.just(ORIGIN) | JSON,
        },
    )
    return values.map(json_bytes) | st.binary(max_size=120)


def json_bytes(value: Any) -> bytes:
    """JSON as a client might send it (integers of any size, non-ASCII text)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- byte mutations ---------------------------------------------------------------------------


@st.composite
def mutations(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with 1-4 bit flips, truncations, extensions, insertions, deletions or
    overwritten runs (so the result is usually near-valid, which reaches deep parsers)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "put"]))
        # Positions are drawn independently of the length, so a plan drawn for one valid
        # ceremony replays the same way on another (whose signature may be a byte longer).
        # Every kind draws the same values whatever the data is (a flip of empty data
        # still draws its bit): otherwise Hypothesis sees the same choices lead to
        # different draws, and calls the strategy flaky.
        at = draw(st.integers(0, 2**16)) % max(len(data), 1)
        if kind == "flip":
            bit = draw(st.integers(0, 7))
            if data:
                data[at] ^= 1 << bit
        elif kind == "truncate":
            del data[at:]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=40))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


# --- valid ceremonies to mutate -----------------------------------------------------------------


@dataclass(frozen=True)
class Ceremony:
    """One valid registration and one valid assertion of the same credential."""

    alg: int
    attestation: str
    registration: dict[str, Any]
    registered: RegisteredCredential
    assertion: dict[str, Any]


def creation_options() -> dict[str, Any]:
    return {
        "rp": {"id": RP_ID, "name": "Example"},
        "user": {"id": b64url(USER_HANDLE), "name": "alice", "displayName": "alice"},
        "challenge": b64url(CHALLENGE),
    }


def verify_reg(body: Any, *, algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS) -> Any:
    return verify_registration(
        parse_registration(body),
        expected_challenge=CHALLENGE,
        expected_rp_id=RP_ID,
        expected_origins=POLICY,
        require_user_verification=False,
        expected_algorithms=algorithms,
    )


@functools.cache
def ceremony(alg: int, attestation: str) -> Ceremony:
    authenticator = Authenticator(alg=alg, attestation=attestation)
    registration = authenticator.create(creation_options(), ORIGIN)
    registered = verify_reg(registration)
    request = {
        "challenge": b64url(CHALLENGE),
        "rpId": RP_ID,
        "allowCredentials": [{"type": "public-key", "id": registration["id"]}],
    }
    assertion = authenticator.get(request, ORIGIN)
    return Ceremony(alg, attestation, registration, registered, assertion)


CEREMONIES = [(alg, fmt) for alg in (ES256, EDDSA, RS256) for fmt in ("none", "packed")]


# --- valid credentials, one part hostile -----------------------------------------------------


def attestation_of(registration: dict[str, Any]) -> dict[str, Any]:
    return dict(cbor2.loads(unb64url(registration["response"]["attestationObject"])))


def with_attestation(registration: dict[str, Any], attestation_object: bytes) -> dict[str, Any]:
    response = {**registration["response"], "attestationObject": b64url(attestation_object)}
    return {**registration, "response": response}


def cose_key_offset(auth_data: bytes) -> int:
    """Where the credential public key starts in authenticatorData with attested data."""
    return 37 + 16 + 2 + int.from_bytes(auth_data[53:55], "big")


def swap_cose_key(registration: dict[str, Any], key_bytes: bytes) -> dict[str, Any]:
    att = attestation_of(registration)
    auth_data: bytes = att["authData"]
    att["authData"] = auth_data[: cose_key_offset(auth_data)] + key_bytes
    return with_attestation(registration, cbor2.dumps(att))


FORMATS = ["none", "packed", "fido-u2f", "tpm", "android-key", "android-safetynet", "apple"]


@st.composite
def mutated_registration(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (a valid registration) with one part replaced by random or mutated bytes: the
    whole attestationObject, its authData, the COSE key, attStmt, fmt, or the id."""
    att = attestation_of(base)
    auth_data: bytes = att["authData"]
    key_at = cose_key_offset(auth_data)
    target = draw(
        st.sampled_from(
            ["object", "random", "authData", "cose", "cose-value", "attStmt", "fmt", "id"]
        )
    )
    if target == "object":
        return with_attestation(base, draw(mutations(cbor2.dumps(att))))
    if target == "random":
        return with_attestation(base, draw(st.binary(max_size=600)))
    if target == "id":
        return {**base, "id": b64url(draw(mutations(unb64url(base["id"]))))}
    if target == "authData":
        att["authData"] = draw(mutations(auth_data))
    elif target == "cose":
        att["authData"] = auth_data[:key_at] + draw(mutations(auth_data[key_at:]))
    elif target == "cose-value":
        att["authData"] = auth_data[:key_at] + cbor2.dumps(draw(CBOR))
    elif target == "attStmt":
        att["attStmt"] = draw(st.dictionaries(st.sampled_from(["alg", "sig", "x5c"]), CBOR))
    else:
        att["fmt"] = draw(st.sampled_from(FORMATS) | st.text(max_size=10))
        att["attStmt"] = draw(
            st.dictionaries(st.text(max_size=8), CBOR, max_size=4)
            | st.fixed_dictionaries(
                {"alg": st.integers(-300, 300), "sig": st.binary(max_size=80)},
                optional={"x5c": st.lists(st.binary(max_size=200), max_size=2)},
            )
        )
    return with_attestation(base, cbor2.dumps(att))


ASSERTION_FIELDS = ["authenticatorData", "signature", "clientDataJSON", "userHandle", "id"]


@st.composite
def mutated_assertion(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """`original` (a valid assertion) with one field mutated, replaced by random bytes or
    text, or (authenticatorData) given the ED flag and random CBOR extensions."""
    field = draw(st.sampled_from(ASSERTION_FIELDS))
    response = dict(original["response"])
    body = {**original, "response": response}
    raw = unb64url(original[field] if field == "id" else response[field])
    how = draw(st.sampled_from(["mutate", "mutate", "random", "text"]))
    if how == "mutate":
        value = b64url(draw(mutations(raw)))
    elif how == "random":
        value = b64url(draw(st.binary(max_size=300)))
    else:
        value = draw(B64ISH)
    if field == "authenticatorData" and draw(st.booleans()):
        value = b64url(raw[:32] + bytes([raw[32] | 0x80]) + raw[33:37] + cbor2.dumps(draw(CBOR)))
    if field == "id":
        body["id"] = body["rawId"] = value
    else:
        response[field] = value
    return body
