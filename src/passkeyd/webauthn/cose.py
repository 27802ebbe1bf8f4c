"""COSE algorithms passkeyd knows, and the signatures py_webauthn 3.0.1 cannot check.

py_webauthn verifies ES256, EdDSA on Ed25519, ES512, PS256, RS256 and ML-DSA signatures. It has
no ES384 (-35): ES384 keys are EC2 on P-384 (libfido2 creates them on YubiKeys). Nor the
fully-specified algorithms of RFC 9864 that replace ES256,
ES384, ES512 and EdDSA (ESP256 -9, ESP384 -51, ESP512 -52, Ed25519 -19, Ed448 -53), nor
ES256K (-47, ECDSA on secp256k1, RFC 8812). passkeyd
decodes those keys and checks their signatures itself, with `cryptography`, in both
ceremonies (`own_public_key`, `own_verify`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from .errors import MalformedResponse, Step

ES256, EDDSA, ES384, ES512, PS256, RS256 = -7, -8, -35, -36, -37, -257
# Fully specified (RFC 9864): ECDSA on one curve with one hash, EdDSA on one curve.
ESP256, ESP384, ESP512, ED25519, ED448 = -9, -51, -52, -19, -53
ES256K = -47  # ECDSA on secp256k1 with SHA-256 (RFC 8812 §3.2; crv 8)
# RSA with other hashes, which py_webauthn verifies and no authenticator is known to make;
# RS1 (SHA-1) only for what insists on it (the FIDO conformance tools do).
PS384, PS512, RS384, RS512, RS1 = -38, -39, -258, -259, -65535
# ML-DSA (FIPS 204), post-quantum: COSE "AKP" keys (draft-ietf-cose-dilithium), which
# py_webauthn verifies with cryptography's ML-DSA.
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50

# Every algorithm a service may offer and accept, and its name, in the order of their COSE
# identifiers (-7, -8, -35, ...).
ALGORITHM_NAMES: dict[int, str] = {
    ES256: "ES256",
    EDDSA: "EdDSA",
    ESP256: "ESP256",
    ED25519: "Ed25519",
    ES384: "ES384",
    ES512: "ES512",
    PS256: "PS256",
    ML_DSA_44: "ML-DSA-44",
    ML_DSA_65: "ML-DSA-65",
    ML_DSA_87: "ML-DSA-87",
    PS384: "PS384",
    PS512: "PS512",
    ESP384: "ESP384",
    ESP512: "ESP512",
    ES256K: "ES256K",
    ED448: "Ed448",
    RS256: "RS256",
    RS384: "RS384",
    RS512: "RS512",
    RS1: "RS1",
}
SUPPORTED_ALGORITHMS: tuple[int, ...] = tuple(ALGORITHM_NAMES)

# COSE key parameters (RFC 9053): kty 1 = OKP, 2 = EC2, 7 = AKP (ML-DSA); crv 1 = P-256,
# 2 = P-384, 3 = P-521, 6 = Ed25519, 7 = Ed448.
_KTY, _ALG, _CRV, _X, _Y = 1, 3, -1, -2, -3
_OKP, _EC2, _AKP = 1, 2, 7
_ED25519_CURVE, _ED448_CURVE = 6, 7


# The key each algorithm signs with (WebAuthn §5.8.5, RFC 9053): its COSE key type (kty 1
# OKP, 2 EC2, 3 RSA), and for elliptic curves its curve (crv 1 P-256, 3 P-521, 6 Ed25519).
# (ES384 keys: es384_public_key.)
_KEY_OF_ALGORITHM: dict[int, tuple[int, int | None]] = {
    ES256: (2, 1),
    ES512: (2, 3),
    ESP256: (2, 1),
    ESP384: (2, 2),
    ESP512: (2, 3),
    ES256K: (2, 8),
    EDDSA: (1, 6),  # §5.8.5: "MUST specify Ed25519"; Ed448 is Ed448 (-53)
    ED25519: (1, 6),
    ED448: (1, 7),
    PS256: (3, None),
    PS384: (3, None),
    PS512: (3, None),
    RS256: (3, None),
    RS384: (3, None),
    RS512: (3, None),
    RS1: (3, None),
    ML_DSA_44: (_AKP, None),
    ML_DSA_65: (_AKP, None),
    ML_DSA_87: (_AKP, None),
}
_KEY_TYPE_NAMES = {1: "OKP", 2: "EC2", 3: "RSA", _AKP: "AKP"}
# The size of an ML-DSA public key (`pub`, label -1), by parameter set (FIPS 204 Table 2).
_ML_DSA_PUBLIC_BYTES = {ML_DSA_44: 1312, ML_DSA_65: 1952, ML_DSA_87: 2592}
_CURVE_NAMES = {1: "P-256", 2: "P-384", 3: "P-521", 6: "Ed25519", 7: "Ed448", 8: "secp256k1"}
# The size of a point's coordinates on each curve: exact, as RFC 9053 §7.1.1 says leading
# zero octets MUST be kept (py_webauthn reads any length as an integer).
_COORDINATE_BYTES = {1: 32, 2: 48, 3: 66, 6: 32, 7: 57, 8: 32}
# The ECDSA algorithms checked here (the others: py_webauthn), by their COSE curve, that
# curve, and their hash.
_OWN_ECDSA: dict[int, tuple[int, type[ec.EllipticCurve], type[hashes.HashAlgorithm]]] = {
    ES384: (2, ec.SECP384R1, hashes.SHA384),
    ESP256: (1, ec.SECP256R1, hashes.SHA256),
    ESP384: (2, ec.SECP384R1, hashes.SHA384),
    ESP512: (3, ec.SECP521R1, hashes.SHA512),
    ES256K: (8, ec.SECP256K1, hashes.SHA256),
}
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


def own_public_key(
    cose_key: bytes,
) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | None:
    """The key, loaded, when its algorithm is one passkeyd checks itself (ES384, ESP256,
    ESP384, ESP512, Ed25519, Ed448); None for those py_webauthn checks.
    Raises MalformedResponse for such a key that is not of its algorithm's type and curve,
    or is no point of that curve."""
    key = _decode(cose_key)
    algorithm = _algorithm(key)
    if algorithm in _OWN_ECDSA:
        crv, curve_type, _ = _OWN_ECDSA[algorithm]
        curve = curve_type()
        size = _COORDINATE_BYTES[crv]
        x, y = key.get(_X), key.get(_Y)
        name = ALGORITHM_NAMES[algorithm]
        if (
            not _is_int(key.get(_KTY), _EC2)
            or not _is_int(key.get(_CRV), crv)
            or not isinstance(x, bytes)
            or not isinstance(y, bytes)
            or len(x) != size
            or len(y) != size
        ):
            raise MalformedResponse(
                Step.PUBLIC_KEY, f"an {name} key must be an EC2 {_CURVE_NAMES[crv]} point"
            )
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        except ValueError as exc:  # not a point on the curve
            raise MalformedResponse(
                Step.PUBLIC_KEY, f"the {name} key is not on {_CURVE_NAMES[crv]}"
            ) from exc
    ed448_key = algorithm == ED448
    if not ed448_key and algorithm != ED25519:
        return None
    x = key.get(_X)
    loader = ed448.Ed448PublicKey if ed448_key else ed25519.Ed25519PublicKey
    size = _COORDINATE_BYTES[_ED448_CURVE if ed448_key else _ED25519_CURVE]
    if not _is_int(key.get(_KTY), _OKP) or not isinstance(x, bytes) or len(x) != size:
        raise MalformedResponse(
            Step.PUBLIC_KEY, f"an {ALGORITHM_NAMES[algorithm]} key must be an OKP key"
        )
    try:
        return loader.from_public_bytes(x)
    except ValueError as exc:
        raise MalformedResponse(Step.PUBLIC_KEY, "the EdDSA key is not on its curve") from exc


def own_verify(cose_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether `signature` signs `data` under a key `own_public_key` loads (ECDSA signatures
    DER-encoded, as WebAuthn sends them; EdDSA's as they are). False for a key it does not
    load (py_webauthn's to check)."""
    public_key = own_public_key(cose_key)
    if public_key is None:
        return False
    return own_verifier(cose_algorithm(cose_key), public_key)(signature, data)


def own_verifier(
    algorithm: int,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
) -> Callable[[bytes, bytes], bool]:
    """`own_verify` for a key already loaded: (signature, data) -> whether it verifies."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(_OWN_ECDSA[algorithm][2]())
        ec_key = public_key

        def verify_ecdsa(signature: bytes, data: bytes) -> bool:
            try:
                ec_key.verify(signature, data, ecdsa)
            except InvalidSignature:
                return False
            return True

        return verify_ecdsa
    ed_key = public_key

    def verify_eddsa(signature: bytes, data: bytes) -> bool:
        try:
            ed_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return verify_eddsa


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
