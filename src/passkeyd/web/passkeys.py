"""A user's passkeys as the account page shows them, read from Verify factors.

A factor's `metadata.authenticator_name` (passkeyd's name for the AAGUID, from the FIDO
metadata or the community list) is shown; for an AAGUID without a name the page shows the
AAGUID itself, which still tells two kinds of authenticator apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Authenticators that do not disclose their model (e.g. attestation "none") report zeros.
UNDISCLOSED_AAGUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class Passkey:
    sid: str
    friendly_name: str
    authenticator_name: str | None
    aaguid: str | None
    date_created: str | None
    date_last_used: str | None
    credential_id: str | None = None  # base64url, as the browser's credential `id`
    entity_sid: str | None = None
    # What the FIDO metadata reports its model as, when a trusted service would refuse it
    # (`metadata.authenticator_status`: REVOKED, a compromise).
    authenticator_status: str | None = None
    # Whether it signs in with no name (`metadata.discoverable`); None: not known.
    discoverable: bool | None = None

    @property
    def authenticator(self) -> str:
        """What to call the device or password manager that holds this passkey."""
        if self.authenticator_name:
            return self.authenticator_name
        if self.aaguid and self.aaguid != UNDISCLOSED_AAGUID:
            return f"Unknown model (AAGUID {self.aaguid})"
        return "Model not disclosed"


def authenticator_name(metadata: Mapping[str, Any]) -> str | None:
    """The name passkeyd gave the factor's authenticator model (`metadata.authenticator_name`)."""
    name = metadata.get("authenticator_name")
    return name if isinstance(name, str) and name.strip() else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def passkey_from_factor(factor: Mapping[str, Any]) -> Passkey:
    metadata = factor.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return Passkey(
        sid=str(factor["sid"]),
        friendly_name=str(factor.get("friendly_name") or ""),
        authenticator_name=authenticator_name(metadata),
        aaguid=_text(metadata.get("aaguid")),
        date_created=_text(factor.get("date_created")),
        date_last_used=_text(metadata.get("date_last_approved")),
        credential_id=_text(metadata.get("credential_id")),
        entity_sid=_text(factor.get("entity_sid")),
        authenticator_status=_text(metadata.get("authenticator_status")),
        discoverable=d if isinstance(d := metadata.get("discoverable"), bool) else None,
    )


def verified_passkeys(factors: Iterable[Mapping[str, Any]]) -> list[Passkey]:
    """Only verified factors: an unverified one is a sign-up that never finished."""
    return [passkey_from_factor(f) for f in factors if f.get("status") == "verified"]
