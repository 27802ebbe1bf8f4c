"""passkeyd.js in a browser without WebAuthn's JSON methods (parseCreationOptionsFromJSON,
parseRequestOptionsFromJSON, toJSON): its own base64url conversion carries whole ceremonies,
and turns a credential into the same JSON the browser's toJSON() gives."""

from __future__ import annotations

from collections.abc import Callable

from .authenticators import PLATFORM, VirtualAuthenticator
from .conftest import Demo
from .demo_tab import DemoTab

WITHOUT_JSON_SUPPORT = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""

# In a demo page: create a passkey with the helper, then compare the helper's JSON of that
# credential with and without the browser's toJSON().
COMPARE_JSON = """async () => {
  const passkeyd = await import("/static/passkeyd.js");
  const answer = await fetch("/api/signup/options", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name: "Mary Jackson"}),
  });
  const {options} = await answer.json();
  const credential = await navigator.credentials.create({
    publicKey: passkeyd.creationOptions(options),
  });
  const native = passkeyd.credentialJSON(credential);
  const toJSON = PublicKeyCredential.prototype.toJSON;
  delete PublicKeyCredential.prototype.toJSON;
  try {
    return {native, fallback: passkeyd.credentialJSON(credential)};
  } finally {
    PublicKeyCredential.prototype.toJSON = toJSON;
  }
}"""


def test_ceremonies_without_the_browsers_json_support(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    site = demo()
    tab = new_tab(site)
    tab.page.add_init_script(WITHOUT_JSON_SUPPORT)
    key = VirtualAuthenticator(tab.page, PLATFORM)

    tab.open("/signup")
    assert tab.page.evaluate("typeof PublicKeyCredential.parseCreationOptionsFromJSON") == (
        "undefined"
    )
    tab.sign_up("Dorothy Vaughan")
    tab.expect_signed_in_as("Dorothy Vaughan")

    with key.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
    tab.sign_in_with_name("Dorothy Vaughan")
    tab.expect_signed_in_as("Dorothy Vaughan")

    with key.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
    tab.sign_in_without_name()
    tab.expect_signed_in_as("Dorothy Vaughan")


def test_fallback_json_matches_the_browsers_own(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    site = demo()
    tab = new_tab(site)
    VirtualAuthenticator(tab.page, PLATFORM)
    tab.open("/signup")

    result = tab.page.evaluate(COMPARE_JSON)
    native, fallback = result["native"], result["fallback"]
    assert native["response"]["attestationObject"]  # the browser's own toJSON() ran
    for key in ("id", "rawId", "type", "authenticatorAttachment", "clientExtensionResults"):
        assert fallback[key] == native[key], key
    for key in ("clientDataJSON", "attestationObject", "transports", "publicKeyAlgorithm"):
        assert fallback["response"][key] == native["response"][key], key
