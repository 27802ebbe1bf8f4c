"""COSE algorithms passkeyd knows, and the one signature py_webauthn 3.0.1 cannot check.

py_webauthn verifies ES256, EdDSA (Ed25519), ES512, PS256, RS256 and ML-DSA signatures; it has no
ES384 (-35) at all. ES384 keys are EC2 on P-384 (libfido2 creates them on YubiKeys), so
passkeyd decodes those keys and checks their ECDSA/SHA-384 signatures itself, with
`cryptography`, in both ceremonies.
"""

from __future__ import annotations

from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import MalformedResponse, Step

ES256, EDDSA, ES384, ES512, PS256, RS256 = -7, -8, -35, -36, -37, -257
# ML-DSA (FIPS 204), post-quantum: COSE "AKP" keys (draft-ietf-cose-dilithium), which
# py_webauthn verifies with cryptography's ML-DSA.
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50

# Every algorithm a service may offer and accept, and its name, in the order of their COSE
# identifiers (-7, -8, -35, ...).
ALGORITHM_NAMES: dict[int, str] = {
    ES256: "ES256",
    EDDSA: "EdDSA",
    ES384: "ES384",
    ES512: "ES512",
    PS256: "PS256",
    ML_DSA_44: "ML-DSA-44",
    ML_DSA_65: "ML-DSA-65",
    ML_DSA_87: "ML-DSA-87",
    RS256: "RS256",
}
SUPPORTED_ALGORITHMS: tuple[int, ...] = tuple(ALGORITHM_NAMES)

# COSE key parameters (RFC 9053): kty 2 = EC2, crv 2 = P-384; kty 7 = AKP (ML-DSA).
_KTY, _ALG, _CRV, _X, _Y = 1, 3, -1, -2, -3
_EC2, _P384, _AKP = 2, 2, 7


# The key each algorithm signs with (WebAuthn §5.8.5, RFC 9053): its COSE key type (kty 1
# OKP, 2 EC2, 3 RSA), and for elliptic curves its curve (crv 1 P-256, 3 P-521, 6 Ed25519).
# (ES384 keys: es384_public_key.)
_KEY_OF_ALGORITHM: dict[int, tuple[int, int | None]] = {
    ES256: (2, 1),
    ES512: (2, 3),
    EDDSA: (1, 6),
    PS256: (3, None),
    RS256: (3, None),
    ML_DSA_44: (_AKP, None),
    ML_DSA_65: (_AKP, None),
    ML_DSA_87: (_AKP, None),
}
_KEY_TYPE_NAMES = {1: "OKP", 2: "EC2", 3: "RSA", _AKP: "AKP"}
# The size of an ML-DSA public key (`pub`, label -1), by parameter set (FIPS 204 Table 2).
_ML_DSA_PUBLIC_BYTES = {ML_DSA_44: 1312, ML_DSA_65: 1952, ML_DSA_87: 2592}
_CURVE_NAMES = {1: "P-256", 3: "P-521", 6: "Ed25519"}
# The size of a point's coordinates on each curve: exact, as RFC 9053 §7.1.1 says leading
# zero octets MUST be kept (py_webauthn reads any length as an integer).
_COORDINATE_BYTES = {1: 32, 2: 48, 3: 66, 6: 32}
# The labels of private key parts (RFC 9053 §7.1.1, §7.2; RFC 8230 §4): `d` of an EC2 or
# OKP key, and `d`, `p`, `q`, `dP`, `dQ`, `qInv`, `other`, `r_i`, `d_i`, `t_i` of an RSA key.
_PRIVATE_LABELS = {1: (-4,), 2: (-4,), 3: tuple(range(-12, -2)), _AKP: (-2,)}  # (AKP: priv)
_MIN_RSA_BITS = 2048  # RFC 8812 §2: RSA keys for RS256/PS256 are at least 2048 bits
# And at most 4096 bits, with a public exponent under 2^32 (65537 in practice): no
# authenticator makes larger RSA passkeys, and a 16,384-bit key with e = 2^64-1 (accepted
# with `none` attestation) cost 100x a normal one at every assertion, failed ones included,
# and past about 16,384 bits OpenSSL cannot load it at all.
_MAX_RSA_BITS = 4096
_MAX_RSA_EXPONENT = 2**32 - 1


def registered_key_algorithm(cose_key: bytes) -> int:
    """The `alg` of a credential's COSE_Key, which must be of the type, and on the curve,
    that algorithm names, each given as an integer: an ES256 key on P-384 passed a service's
    `Algorithms=ES256` while it signs as no ES256 key can (WebAuthn §5.8.5: "Keys with
    algorithm ES256 (-7) MUST specify P-256"), and py_webauthn reads `true` or `1.0` as the
    integer 1. Algorithms passkeyd does not know are left to the check of the algorithms
    offered. Raises MalformedResponse."""
    key = _decode(cose_key)
    algorithm = _algorithm(key)
    kty_given = key.get(_KTY)
    if type(kty_given) is int and any(label in key for label in _PRIVATE_LABELS.get(kty_given, ())):
        raise MalformedResponse(
            Step.PUBLIC_KEY, "the credential public key holds private key parts"
        )
    expected = _KEY_OF_ALGORITHM.get(algorithm)
    if expected is None:
        return algorithm
    kty, crv = expected
    name = ALGORITHM_NAMES[algorithm]
    if not _is_int(kty_given, kty):
        raise MalformedResponse(
            Step.PUBLIC_KEY, f"an {name} key must be a COSE {_KEY_TYPE_NAMES[kty]} key"
        )
    if crv is not None and not _is_int(key.get(_CRV), crv):
        raise MalformedResponse(
            Step.PUBLIC_KEY, f"an {name} key must be on the {_CURVE_NAMES[crv]} curve"
        )
    if kty == _AKP:  # pub (-1): the ML-DSA public key, of its parameter set's size
        size = _ML_DSA_PUBLIC_BYTES[algorithm]
        public = key.get(-1)
        if not isinstance(public, bytes) or len(public) != size:
            raise MalformedResponse(
                Step.PUBLIC_KEY, f"an {name} key's public key must be {size} bytes"
            )
    elif crv is not None:
        size = _COORDINATE_BYTES[crv]
        coordinates = (key.get(_X),) if kty == 1 else (key.get(_X), key.get(_Y))
        if not all(isinstance(c, bytes) and len(c) == size for c in coordinates):
            raise MalformedResponse(
                Step.PUBLIC_KEY,
                f"an {name} key's coordinates must be {size} bytes each ({_CURVE_NAMES[crv]})",
            )
    else:  # RSA: -1 is the modulus n, -2 the exponent e
        modulus, exponent = key.get(-1), key.get(-2)
        bits = int.from_bytes(modulus, "big").bit_length() if isinstance(modulus, bytes) else 0
        if not _MIN_RSA_BITS <= bits <= _MAX_RSA_BITS:
            raise MalformedResponse(
                Step.PUBLIC_KEY,
                f"an {name} key must be from {_MIN_RSA_BITS} to {_MAX_RSA_BITS} bits",
            )
        e = int.from_bytes(exponent, "big") if isinstance(exponent, bytes) else 0
        if not (3 <= e <= _MAX_RSA_EXPONENT and e % 2):
            raise MalformedResponse(
                Step.PUBLIC_KEY, f"an {name} key's exponent must be odd, from 3 to 2^32-1"
            )
    return algorithm


def _is_int(value: object, expected: int) -> bool:
    return type(value) is int and value == expected


def cose_algorithm(cose_key: bytes) -> int:
    """The `alg` of a COSE_Key. Raises MalformedResponse when there is none."""
    return _algorithm(_decode(cose_key))


def _algorithm(key: dict[Any, Any]) -> int:
    alg = key.get(_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise MalformedResponse(Step.PUBLIC_KEY, "the credential public key has no algorithm")
    return alg


def es384_public_key(cose_key: bytes) -> ec.EllipticCurvePublicKey:
    """An ES384 COSE_Key as a P-384 public key: kty EC2, crv P-384, 48-byte x and y."""
    key = _decode(cose_key)
    x, y = key.get(_X), key.get(_Y)
    if (
        not _is_int(key.get(_KTY), _EC2)
        or not _is_int(key.get(_ALG), ES384)
        or not _is_int(key.get(_CRV), _P384)
        or not isinstance(x, bytes)
        or not isinstance(y, bytes)
        or len(x) != _COORDINATE_BYTES[_P384]
        or len(y) != _COORDINATE_BYTES[_P384]
    ):
        raise MalformedResponse(Step.PUBLIC_KEY, "an ES384 key must be an EC2 P-384 point")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP384R1()
        ).public_key()
    except ValueError as exc:  # not a point on the curve
        raise MalformedResponse(Step.PUBLIC_KEY, "the ES384 key is not on P-384") from exc


def verify_es384(cose_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether `signature` (DER ECDSA, as WebAuthn sends it) signs `data` with SHA-384."""
    try:
        es384_public_key(cose_key).verify(signature, data, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def _decode(cose_key: bytes) -> dict[Any, Any]:
    try:
        key = cbor2.loads(cose_key)
    except Exception as exc:  # cbor2 raises assorted types on bad input
        raise MalformedResponse(Step.PUBLIC_KEY, "the credential public key is not CBOR") from exc
    if not isinstance(key, dict):
        raise MalformedResponse(Step.PUBLIC_KEY, "the credential public key is not a COSE_Key")
    # Labels are integers or text (RFC 9052 §7): Python's dict finds the label 1 under
    # `true` or `1.0` too, so a key labelled so would pass for a well-formed one.
    if not all(type(label) is int or type(label) is str for label in key):
        raise MalformedResponse(
            Step.PUBLIC_KEY, "the credential public key has a label neither an integer nor text"
        )
    return key
