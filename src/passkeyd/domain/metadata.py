"""What the domain needs to know about authenticators (implemented by `passkeyd.metadata`)."""

from __future__ import annotations

from typing import Protocol

from passkeyd.webauthn import TrustStore


class Metadata(Protocol):
    def trust_store(self) -> TrustStore:
        """The attestation roots and statuses of the FIDO Metadata Service."""
        ...

    def authenticator_name(self, aaguid: str) -> str | None:
        """The provider's name for an AAGUID, when known."""
        ...
