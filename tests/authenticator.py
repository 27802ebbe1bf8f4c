"""A software WebAuthn authenticator (and the browser around it) for driving ceremonies.

It produces exactly what `navigator.credentials.create()/get()` + `toJSON()` produce, for
ES256, EdDSA (Ed25519 or Ed448), RS256, ES384, ES512, PS256, ML-DSA and the fully-specified
ESP256, ESP384, ESP512, Ed25519 and Ed448 keys, `none`, `packed` self attestation or
`packed` full attestation with a given certificate chain (`x5c`), any flags, discoverable
credentials, and counters that grow or stay 0.
Every field can be overridden so a test can break exactly one verification step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa

UP, UV, BE, BS, AT, ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80
# Extensions {"x": 1.0} whose 1.0 is a float16 (3 bytes): cbor2 writes it again as a float64
# (9 bytes), which is where py_webauthn looked for the end of authenticatorData.
FLOAT16_EXTENSIONS = bytes([0xA1, 0x61, 0x78, 0xF9, 0x3C, 0x00])
# Extensions {"x": 1} whose 1 is written in two bytes (0x18 0x01), not in CTAP2's canonical
# one (0x01): cbor2 writes it again shorter, and py_webauthn finds bytes left over.
LONG_FORM_EXTENSIONS = bytes([0xA1, 0x61, 0x78, 0x18, 0x01])
# Extensions that do not end authenticatorData as one CBOR map, and what refuses them.
EXTENSIONS_NOT_ENDING_AUTH_DATA = {
    "bytes-after-the-extensions": (FLOAT16_EXTENSIONS + b"\x00" * 6, "6 bytes after its last"),
    "extensions-not-a-map": (bytes([0x01]), "the extensions is not a CBOR map"),
}
ES256, EDDSA, RS256, PS256, ES384, ES512 = -7, -8, -257, -37, -35, -36
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50
# Fully specified (RFC 9864); and EdDSA (-8) on Ed448, which is no COSE identifier of its own.
ESP256, ESP384, ESP512, ED25519, ED448 = -9, -51, -52, -19, -53
ES256K = -47
PS384, PS512, RS384, RS512, RS1 = -38, -39, -258, -259, -65535
# RSA signatures: PKCS#1 v1.5 (RS*) or PSS (PS*), and their hash.
_RSA = {RS256: (False, hashes.SHA256), RS384: (False, hashes.SHA384),
        RS512: (False, hashes.SHA512), RS1: (False, hashes.SHA1),
        PS256: (True, hashes.SHA256), PS384: (True, hashes.SHA384),
        PS512: (True, hashes.SHA512)}  # fmt: skip
EDDSA_ED448 = "EdDSA on Ed448"
_CURVES = {ES256: (ec.SECP256R1, 1, 32), ES384: (ec.SECP384R1, 2, 48), ES512: (ec.SECP521R1, 3, 66),
           ESP256: (ec.SECP256R1, 1, 32), ESP384: (ec.SECP384R1, 2, 48),
           ESP512: (ec.SECP521R1, 3, 66), ES256K: (ec.SECP256K1, 8, 32)}  # fmt: skip
_HASHES = {ES256: hashes.SHA256, ES384: hashes.SHA384, ES512: hashes.SHA512,
           ESP256: hashes.SHA256, ESP384: hashes.SHA384, ESP512: hashes.SHA512,
           ES256K: hashes.SHA256}  # fmt: skip
# EdDSA keys: their COSE alg and crv (6 Ed25519, 7 Ed448), and their private key type.
_EDWARDS: dict[Any, tuple[int, int, Any]] = {
    EDDSA: (EDDSA, 6, ed25519.Ed25519PrivateKey),
    ED25519: (ED25519, 6, ed25519.Ed25519PrivateKey),
    ED448: (ED448, 7, ed448.Ed448PrivateKey),
    EDDSA_ED448: (EDDSA, 7, ed448.Ed448PrivateKey),
}
_ML_DSA = {
    ML_DSA_44: mldsa.MLDSA44PrivateKey,
    ML_DSA_65: mldsa.MLDSA65PrivateKey,
    ML_DSA_87: mldsa.MLDSA87PrivateKey,
}
AAGUID = bytes.fromhex("fbfc3007154e4ecc8c0b6e020557d7bd")  # iCloud Keychain's AAGUID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Key:
    alg: int
    private: Any

    @classmethod
    def generate(cls, alg: int) -> Key:
        if alg in _CURVES:
            return cls(alg, ec.generate_private_key(_CURVES[alg][0]()))
        if alg in _EDWARDS:
            return cls(alg, _EDWARDS[alg][2].generate())
        if alg in _RSA:
            return cls(alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        if alg in _ML_DSA:
            return cls(alg, _ML_DSA[alg].generate())
        raise ValueError(alg)

    def cose(self) -> bytes:
        pub = self.private.public_key()
        if self.alg in _CURVES:
            _, crv, size = _CURVES[self.alg]
            n = pub.public_numbers()
            return cbor2.dumps(
                {
                    1: 2,
                    3: self.alg,
                    -1: crv,
                    -2: n.x.to_bytes(size, "big"),
                    -3: n.y.to_bytes(size, "big"),
                }
            )
        if self.alg in _EDWARDS:
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            alg, crv, _ = _EDWARDS[self.alg]
            return cbor2.dumps(
                {1: 1, 3: alg, -1: crv, -2: pub.public_bytes(Encoding.Raw, PublicFormat.Raw)}
            )
        if self.alg in _ML_DSA:  # an AKP key (draft-ietf-cose-dilithium): pub is -1
            return cbor2.dumps({1: 7, 3: self.alg, -1: pub.public_bytes_raw()})
        n = pub.public_numbers()
        return cbor2.dumps(
            {1: 3, 3: self.alg, -1: n.n.to_bytes(256, "big"), -2: n.e.to_bytes(3, "big")}
        )

    def sign(self, data: bytes) -> bytes:
        if self.alg in _CURVES:
            return self.private.sign(data, ec.ECDSA(_HASHES[self.alg]()))
        if self.alg in _EDWARDS or self.alg in _ML_DSA:
            return self.private.sign(data)
        pss, digest = _RSA[self.alg]
        if not pss:
            return self.private.sign(data, padding.PKCS1v15(), digest())
        return self.private.sign(
            data,
            padding.PSS(mgf=padding.MGF1(digest()), salt_length=padding.PSS.MAX_LENGTH),
            digest(),
        )


@dataclass
class StoredCredential:
    credential_id: bytes
    key: Key
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


@dataclass
class Authenticator:
    """One authenticator. `counter_step` 0 models synced passkeys (counter always 0)."""

    alg: int = ES256
    attestation: str = "none"  # or "packed" (self attestation)
    uv: bool = True
    backup_eligible: bool = True
    backed_up: bool = True
    counter_step: int = 1
    attachment: str = "platform"
    transports: tuple[str, ...] = ("internal", "hybrid")
    aaguid: bytes = AAGUID
    credentials: dict[bytes, StoredCredential] = field(default_factory=dict)
    # Full packed attestation: DER certificates, leaf first, and the leaf's ES256 key.
    x5c: list[bytes] | None = None
    attestation_key: Any = None
    # The statements of a "compound" attestation (formats as `attestation` takes them).
    compound: tuple[str, ...] = ("packed", "self")

    def _flags(self, *, at: bool) -> int:
        flags = UP
        if self.uv:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        if self.backed_up:
            flags |= BS
        if at:
            flags |= AT
        return flags

    # --- navigator.credentials.create() ---------------------------------------------------

    def create(self, options: dict[str, Any], origin: str, **override: Any) -> dict[str, Any]:
        """`options` is the factor's `options` (with or without the `publicKey` wrapper).

        Overrides: type, challenge (str), origin, rp_id (for the hash), flags (int),
        alg (key algorithm), attestation, client_data (raw bytes), cross_origin, top_origin,
        attested (False: no attested credential data),
        credential_id (bytes), id (str), sign_count.
        """
        pk = options.get("publicKey", options)
        rp_id = override.get("rp_id", pk["rp"]["id"])
        alg = override.get("alg", self.alg)
        key = Key.generate(alg)
        credential_id = override.get("credential_id", os.urandom(32))
        client_data = override.get("client_data") or self._client_data(
            override.get("type", "webauthn.create"),
            override.get("challenge", pk["challenge"]),
            override.get("origin", origin),
            override.get("cross_origin"),
            override.get("top_origin"),
        )
        flags = override.get("flags", self._flags(at=True))
        count = override.get("sign_count", 0)
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags])
        auth_data += struct.pack(">I", count)
        if override.get("attested", True):
            auth_data += self.aaguid + struct.pack(">H", len(credential_id))
            auth_data += credential_id + key.cose()
        fmt = override.get("attestation", self.attestation)
        signed = auth_data + hashlib.sha256(client_data).digest()
        if fmt == "compound":  # §8.9: "self" in `compound` is packed self attestation
            att_stmt: Any = [
                dict(zip(("fmt", "attStmt"), self._statement(sub, signed, key, credential_id)))
                for sub in override.get("compound", self.compound)
            ]
        else:
            fmt, att_stmt = self._statement(fmt, signed, key, credential_id)
        attestation_object = override.get(
            "attestation_object",
            cbor2.dumps({"fmt": fmt, "attStmt": att_stmt, "authData": auth_data}),
        )
        self.credentials[credential_id] = StoredCredential(
            credential_id, key, pk["rp"]["id"], unb64url(pk["user"]["id"]), count
        )
        ident = override.get("id", b64url(credential_id))
        return {
            "id": ident,
            "rawId": ident,
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": list(self.transports),
            },
            "clientExtensionResults": {},
        }

    def _statement(
        self, fmt: str, signed: bytes, key: Key, credential_id: bytes
    ) -> tuple[str, dict[str, Any]]:
        """The attestation statement of format `fmt` over `signed` (authenticatorData ||
        clientDataHash): packed (full with `x5c`, else self), "self" (packed self
        attestation), fido-u2f (with `x5c`), or an empty one for anything else."""
        rp_id_hash, client_data_hash = signed[:32], signed[-32:]
        if fmt == "self":
            cose_alg = _EDWARDS[key.alg][0] if key.alg in _EDWARDS else key.alg
            return "packed", {"alg": cose_alg, "sig": key.sign(signed)}
        if fmt == "packed" and self.x5c:  # ES256, or ES384 with a P-384 attestation key
            p384 = isinstance(self.attestation_key.curve, ec.SECP384R1)
            hash_ = hashes.SHA384() if p384 else hashes.SHA256()
            signature = self.attestation_key.sign(signed, ec.ECDSA(hash_))
            return fmt, {"alg": ES384 if p384 else ES256, "sig": signature, "x5c": self.x5c}
        if fmt == "packed":
            return self._statement("self", signed, key, credential_id)
        if fmt == "fido-u2f" and self.x5c:  # §8.6: an ES256 key, signed as CTAP1 signs it
            point = key.private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            u2f = b"\x00" + rp_id_hash + client_data_hash + credential_id + point
            signature = self.attestation_key.sign(u2f, ec.ECDSA(hashes.SHA256()))
            return fmt, {"sig": signature, "x5c": self.x5c}
        return fmt, {}

    # --- navigator.credentials.get() ------------------------------------------------------

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        credential_id: bytes | None = None,
        **override: Any,
    ) -> dict[str, Any]:
        """Sign the challenge with an allowed credential (or any for this RP when none are listed).

        Overrides: type, challenge, origin, rp_id, flags, sign_count, user_handle (bytes or
        None to omit), signature (bytes), client_data (bytes), cross_origin, top_origin.
        """
        pk = options.get("publicKey", options)
        rp_id = pk.get("rpId") or pk["rp"]["id"]
        if credential_id is None:
            allowed = [unb64url(c["id"]) for c in pk.get("allowCredentials") or []]
            candidates = [
                c
                for c in self.credentials.values()
                if c.rp_id == rp_id and (not allowed or c.credential_id in allowed)
            ]
            if not candidates:
                raise LookupError("no credential for this RP")
            credential_id = candidates[-1].credential_id
        stored = self.credentials[credential_id]
        stored.sign_count += self.counter_step
        count = override.get("sign_count", stored.sign_count)
        client_data = override.get("client_data") or self._client_data(
            override.get("type", "webauthn.get"),
            override.get("challenge", pk["challenge"]),
            override.get("origin", origin),
            override.get("cross_origin"),
            override.get("top_origin"),
        )
        auth_data = (
            hashlib.sha256(override.get("rp_id", rp_id).encode()).digest()
            + bytes([override.get("flags", self._flags(at=False))])
            + struct.pack(">I", count)
        )
        signature = override.get(
            "signature", stored.key.sign(auth_data + hashlib.sha256(client_data).digest())
        )
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        user_handle = override.get("user_handle", stored.user_handle)
        if user_handle is not None:
            response["userHandle"] = b64url(user_handle)
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "response": response,
            "clientExtensionResults": {},
        }

    @staticmethod
    def _client_data(
        ctype: str,
        challenge: str,
        origin: str,
        cross_origin: bool | None = None,
        top_origin: str | None = None,
    ) -> bytes:
        data: dict[str, Any] = {"type": ctype, "challenge": challenge, "origin": origin}
        if cross_origin is not None:
            data["crossOrigin"] = cross_origin
        if top_origin is not None:
            data["topOrigin"] = top_origin
        return json.dumps(data, separators=(",", ":")).encode()
