"""The demo's account page names each passkey's authenticator model as passkeyd named it
(`metadata.authenticator_name`)."""

from __future__ import annotations

from passkeyd.web.passkeys import passkey_from_factor


def _factor(metadata: dict[str, object]) -> dict[str, object]:
    return {
        "sid": "YF" + "0" * 32,
        "friendly_name": "My key",
        "status": "verified",
        "metadata": metadata,
        "date_created": "2026-11-26T00:00:00Z",
    }


def test_the_name_passkeyd_gave_is_shown() -> None:
    named = {"aaguid": "cb69481e-8ff7-4039-93ec-0a2729a154a8", "authenticator_name": "YubiKey 5"}
    assert passkey_from_factor(_factor(named)).authenticator == "YubiKey 5"


def test_without_a_name_the_model_is_described_by_its_aaguid() -> None:
    unnamed = {"aaguid": "cb69481e-8ff7-4039-93ec-0a2729a154a8"}
    assert passkey_from_factor(_factor(unnamed)).authenticator.startswith("Unknown model")
