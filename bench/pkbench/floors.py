"""Library floors, measured in-process on one core: how fast the crypto and py_webauthn are
on this machine today, to read the end-to-end figures against."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from webauthn import verify_authentication_response, verify_registration_response

from .authn import ORIGIN, RP_ID, Authenticator, KeyPool, b64url


@dataclass(frozen=True)
class Floor:
    name: str
    ops: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def us_per_op(self) -> float:
        return 1e6 * self.cpu_seconds / self.ops

    @property
    def per_cpu_second(self) -> float:
        return self.ops / self.cpu_seconds

    @property
    def per_second(self) -> float:
        return self.ops / self.wall_seconds


def measure(name: str, op: Callable[[], object], seconds: float, batch: int = 50) -> Floor:
    for _ in range(batch):  # warm
        op()
    ops = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < seconds:
        for _ in range(batch):
            op()
        ops += batch
    return Floor(name, ops, time.process_time() - cpu0, time.perf_counter() - wall0)


def _options(challenge: bytes) -> dict[str, object]:
    return {
        "publicKey": {
            "rp": {"id": RP_ID, "name": "Example"},
            "user": {"id": b64url(b"YE" + os.urandom(16)), "name": "a", "displayName": "a"},
            "challenge": b64url(challenge),
            "rpId": RP_ID,
        }
    }


def run_floors(seconds: float) -> list[Floor]:
    key = ec.generate_private_key(ec.SECP256R1())
    data = os.urandom(37 + 32)
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    algorithm = ec.ECDSA(hashes.SHA256())

    challenge = os.urandom(32)
    authenticator = Authenticator(counter_step=0)  # same assertion verifies every time
    created = authenticator.create(_options(challenge), ORIGIN)
    registered = verify_registration_response(
        credential=created,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    assertion = authenticator.get(_options(challenge), ORIGIN)
    none_attestation = KeyPool(size=1).create(_options(challenge), ORIGIN)

    def ecdsa() -> None:
        public.verify(signature, data, algorithm)

    def authentication() -> None:
        verify_authentication_response(
            credential=assertion,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=registered.credential_public_key,
            credential_current_sign_count=0,
        )

    def registration() -> None:
        verify_registration_response(
            credential=none_attestation,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )

    return [
        measure("ECDSA P-256 verify (cryptography)", ecdsa, seconds),
        measure("py_webauthn verify_authentication_response", authentication, seconds),
        measure("py_webauthn verify_registration_response (none)", registration, seconds),
    ]
