"""Virtual authenticators through the Chrome DevTools Protocol `WebAuthn` domain.

A virtual authenticator belongs to the tab whose CDP session added it: another tab of the
same context sees none, and a ceremony there waits until the page's own deadline. To use a
passkey from a second tab, copy it (`credentials()` then `add_credential()`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import CDPSession, Page

# A phone or laptop: passkeys that sign in without a name, and user verification.
PLATFORM = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}
# Security keys over USB without resident keys (so no sign-in without a name).
SECURITY_KEY_CTAP2 = {
    "protocol": "ctap2",
    "transport": "usb",
    "hasResidentKey": False,
    "hasUserVerification": False,
}
SECURITY_KEY_U2F = {
    "protocol": "u2f",
    "transport": "usb",
    "hasResidentKey": False,
    "hasUserVerification": False,
}
# Keys that cannot verify the user: no UV at all, or UV that fails.
NO_USER_VERIFICATION = {**SECURITY_KEY_CTAP2, "hasUserVerification": False}
FAILS_USER_VERIFICATION = {
    **SECURITY_KEY_CTAP2,
    "hasUserVerification": True,
    "isUserVerified": False,
}


class VirtualAuthenticator:
    def __init__(self, page: Page, options: dict[str, Any]) -> None:
        self.cdp: CDPSession = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        result = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {"options": {"automaticPresenceSimulation": True, **options}},
        )
        self.id: str = result["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        result = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})
        credentials: list[dict[str, Any]] = result["credentials"]
        return credentials

    def add_credential(self, credential: dict[str, Any]) -> None:
        self.cdp.send(
            "WebAuthn.addCredential", {"authenticatorId": self.id, "credential": credential}
        )

    def set_presence(self, enabled: bool) -> None:
        self.cdp.send(
            "WebAuthn.setAutomaticPresenceSimulation",
            {"authenticatorId": self.id, "enabled": enabled},
        )

    @contextmanager
    def untouched(self) -> Iterator[None]:
        """Nobody touches the authenticator meanwhile. Headless Chromium has no autofill UI, so
        a virtual authenticator answers the sign-in page's autofill (conditional) request at
        once with any passkey it holds; a test that means to press a sign-in button holds it
        back like this until the page's autofill request is waiting."""
        self.set_presence(False)
        try:
            yield
        finally:
            self.set_presence(True)
