"""Security keys over USB (no resident key): direct attestation is accepted and stored in the
key's own format; a service that requires user verification refuses a key that cannot verify
its user, with a sentence and nothing stored; and one authenticator cannot register twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from .authenticators import (
    FAILS_USER_VERIFICATION,
    NO_USER_VERIFICATION,
    PLATFORM,
    SECURITY_KEY_CTAP2,
    SECURITY_KEY_U2F,
    VirtualAuthenticator,
)
from .conftest import Demo, Passkeyd
from .demo_tab import DemoTab

COULD_NOT_VERIFY = (
    "Your authenticator could not verify you. This site needs a passkey that checks your"
    " fingerprint, face, PIN or screen lock: try again, or use another authenticator."
)


@pytest.mark.parametrize(
    ("authenticator", "fmt"),
    [(SECURITY_KEY_CTAP2, "packed"), (SECURITY_KEY_U2F, "fido-u2f")],
    ids=["ctap2-packed", "u2f-fido-u2f"],
)
def test_security_key_with_direct_attestation(
    demo: Callable[..., Demo],
    new_tab: Callable[[Demo], DemoTab],
    passkeyd: Passkeyd,
    authenticator: dict[str, Any],
    fmt: str,
) -> None:
    site = demo("--attestation", "direct")
    tab = new_tab(site)
    VirtualAuthenticator(tab.page, authenticator)

    tab.sign_up("Hedy Lamarr")
    tab.expect_signed_in_as("Hedy Lamarr")
    tab.shot("account")

    # Stored as passkeyd verified it: the statement's own format, and the key's AAGUID.
    [factor] = passkeyd.verified_factors(site.service_sid)
    assert passkeyd.stored_formats(site.service_sid) == [fmt]
    assert factor["metadata"]["aaguid"]
    assert factor["metadata"]["discoverable"] is False  # (credProps: no resident key)
    expect(tab.page.locator(".passkey dd.sign-in")).to_have_text("with your name")
    service = passkeyd.get(f"/v2/Services/{site.service_sid}")
    assert service["passkeys"]["attestation"] == "direct"

    # No resident key, so no autofill: signing in takes the name.
    tab.sign_out()
    tab.wait_for_autofill()
    tab.sign_in_with_name("Hedy Lamarr")
    tab.expect_signed_in_as("Hedy Lamarr")


@pytest.mark.parametrize(
    "authenticator",
    [NO_USER_VERIFICATION, FAILS_USER_VERIFICATION],
    ids=["no-uv", "uv-fails"],
)
def test_required_user_verification_refuses_a_key_that_cannot_verify(
    demo: Callable[..., Demo],
    new_tab: Callable[[Demo], DemoTab],
    passkeyd: Passkeyd,
    authenticator: dict[str, Any],
) -> None:
    site = demo("--user-verification", "required")
    tab = new_tab(site)
    VirtualAuthenticator(tab.page, authenticator)

    tab.sign_up("Barbara Liskov")
    tab.expect_error(COULD_NOT_VERIFY)
    assert tab.page.url.endswith("/signup")
    tab.shot("refused")

    assert passkeyd.verified_factors(site.service_sid) == []
    assert passkeyd.stored_formats(site.service_sid) == []


def test_registering_the_same_authenticator_twice_is_refused(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab], passkeyd: Passkeyd
) -> None:
    site = demo()
    tab = new_tab(site)
    authenticator = VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up("Margaret Hamilton")
    tab.expect_signed_in_as("Margaret Hamilton")

    # passkeyd lists the registered passkey in excludeCredentials; the authenticator holds
    # it, so the browser refuses with InvalidStateError before anything reaches passkeyd.
    tab.page.get_by_role("button", name="Add a passkey").click()
    tab.expect_error("This passkey is already registered.")
    assert tab.passkey_names() == ["Margaret Hamilton"]
    tab.shot("1-already-registered")
    assert len(passkeyd.verified_factors(site.service_sid)) == 1

    # Signing up again under the same name is refused before the browser is asked.
    with authenticator.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
    tab.sign_up("margaret hamilton")
    tab.expect_error("That name already has a passkey. Sign in instead, or choose another name.")
    tab.shot("2-name-taken")
    assert len(passkeyd.verified_factors(site.service_sid)) == 1
