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


def test_passkeys_that_could_not_be_read_are_not_shown_as_none_left() -> None:
    """With passkeyd unreachable, the account page said "You have no passkeys left. Add one
    now, or you will not be able to sign in again": false, and alarming."""
    from passkeyd.web.pages import PageContext, account_page

    ctx = PageContext("localhost", "VA" + "0" * 32, "http://127.0.0.1:1", 1000, "preferred")
    down = account_page(ctx, name="Ada", passkeys=None, error="cannot be reached")
    assert "could not be loaded" in down and "no passkeys left" not in down
    assert "no passkeys left" in account_page(ctx, name="Ada", passkeys=[])
    one = account_page(ctx, name="Ada", passkeys=[passkey_from_factor(_factor({}))])
    assert 'aria-label="Delete passkey My key"' in one and "data-last" in one
