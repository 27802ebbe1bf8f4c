"""Sign up and sign in with a platform authenticator (a phone or laptop that verifies its
user): with a name, without one, and from the name field's autofill."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Browser, Request, expect

from .authenticators import PLATFORM, VirtualAuthenticator
from .conftest import Demo, Passkeyd
from .demo_tab import DemoTab


def _is_signin_options(body: dict[str, object]) -> Callable[[Request], bool]:
    """The page asking for sign-in options: with {"name": ...}, or {} for any passkey."""

    def matches(request: Request) -> bool:
        return request.url.endswith("/api/signin/options") and request.post_data_json == body

    return matches


def _signed_up_then_out(tab: DemoTab, name: str) -> VirtualAuthenticator:
    """`name` signs up with a platform authenticator, then out: the sign-in page's autofill
    request waits, unanswered. Returns the authenticator, which answers from now on."""
    key = VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up(name)
    tab.expect_signed_in_as(name)
    with key.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
    return key


def test_sign_up_then_sign_in_with_a_name(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab], passkeyd: Passkeyd
) -> None:
    site = demo()
    tab = new_tab(site)
    authenticator = VirtualAuthenticator(tab.page, PLATFORM)

    tab.open("/signup")
    tab.shot("1-sign-up")
    tab.sign_up("Ada Lovelace")
    tab.expect_signed_in_as("Ada Lovelace")
    tab.expect_notice("Your passkey is ready, and you are signed in.")
    assert tab.passkey_names() == ["Ada Lovelace"]
    tab.shot("2-account-after-sign-up")

    # The passkey is verified in passkeyd, under an identity that is not the name.
    [identity] = passkeyd.identities(site.service_sid)
    [factor] = passkeyd.factors(site.service_sid, identity)
    assert factor["status"] == "verified"
    assert factor["friendly_name"] == "Ada Lovelace"
    assert "Ada" not in identity
    # Chromium said so (credProps) of the resident key it made: the demo asks `preferred`.
    assert factor["metadata"]["discoverable"] is True
    expect(tab.page.locator(".passkey dd.sign-in")).to_have_text("without a name")

    with authenticator.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
    tab.shot("3-signed-out")

    with tab.page.expect_request(_is_signin_options({"name": "ada lovelace"})):
        tab.sign_in_with_name("ada lovelace")  # names match whatever their case
    tab.expect_signed_in_as("Ada Lovelace")
    tab.expect_notice("You are signed in.")
    expect(tab.page.locator(".passkey dd").nth(2)).not_to_have_text("never")  # last used
    tab.shot("4-account-after-sign-in")


def test_sign_in_without_a_name_tells_the_server_who_signed_in(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab], browser: Browser
) -> None:
    site = demo()
    # Two people, each with a passkey on their own device (browser context).
    grace = new_tab(site)
    grace_key = VirtualAuthenticator(grace.page, PLATFORM)
    grace.sign_up("Grace Hopper")
    grace.expect_signed_in_as("Grace Hopper")
    with grace_key.untouched():
        grace.sign_out()
        grace.wait_for_autofill()

    other_context = browser.new_context()
    try:
        alan = DemoTab(other_context.new_page(), site.url, grace.test_name)
        alan_key = VirtualAuthenticator(alan.page, PLATFORM)
        alan.sign_up("Alan Turing")
        alan.expect_signed_in_as("Alan Turing")
        with alan_key.untouched():
            alan.sign_out()
            alan.wait_for_autofill()
    finally:
        other_context.close()

    # Grace signs in without typing a name: only her passkey can say who she is.
    with grace_key.untouched():
        grace.open("/")
        grace.wait_for_autofill()
    grace.shot("1-sign-in-page")
    with grace.page.expect_request(_is_signin_options({})):
        grace.sign_in_without_name()
    grace.expect_signed_in_as("Grace Hopper")
    assert grace.passkey_names() == ["Grace Hopper"]
    grace.shot("2-signed-in-without-a-name")


def test_sign_in_from_the_name_fields_autofill(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    site = demo()
    tab = new_tab(site)
    authenticator = VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up("Katherine Johnson")
    tab.expect_signed_in_as("Katherine Johnson")
    with authenticator.untouched():
        tab.sign_out()
        tab.wait_for_autofill()
        expect(tab.page.locator("body")).to_have_attribute("data-autofill", "waiting")

    # The page offered passkeys in autofill (mediation "conditional"); headless Chromium's
    # virtual authenticator picks its passkey as soon as it may, as a person would pick it
    # from the list: the page signs in with no button pressed.
    tab.open("/")
    tab.expect_signed_in_as("Katherine Johnson")
    tab.shot("signed-in-from-autofill")


def test_the_buttons_stay_off_while_the_next_page_loads(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    """A ceremony that succeeded turned the buttons back on before the account page came: a
    second press on a slow connection started another ceremony."""
    tab = new_tab(demo())
    _signed_up_then_out(tab, "Barbara Liskov")
    changes: list[str] = []
    tab.page.on("console", lambda message: changes.append(message.text))
    tab.page.evaluate(_WATCH_BUTTONS)
    tab.sign_in_with_name("Barbara Liskov")
    tab.expect_signed_in_as("Barbara Liskov")
    seen = [c.removeprefix("watch: ") for c in changes if c.startswith("watch: ")]
    assert "state done" in seen, seen
    assert "button on" not in seen[seen.index("state done") :], seen


# Reports each change of the page's state and of its ceremony buttons on the console.
_WATCH_BUTTONS = """() => new MutationObserver((records) => {
  for (const r of records) {
    if (r.attributeName === "data-state") console.log("watch: state " + r.target.dataset.state);
    else if (r.target.matches("button[data-ceremony]")) {
      console.log("watch: button " + (r.target.disabled ? "off" : "on"));
    }
  }
}).observe(document.body, {
  attributes: true, subtree: true, attributeFilter: ["data-state", "disabled"],
})"""


def test_a_second_press_while_the_first_starts_does_nothing(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    """Two presses while the autofill request was being stopped: the second was taken for a
    failed sign-in and offered autofill again in the middle of the first's ceremony, which
    that broke (found by review)."""
    site = demo()
    tab = new_tab(site)
    key = VirtualAuthenticator(tab.page, PLATFORM)
    asked: list[str] = []
    tab.page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/options") else None)
    with key.untouched():  # the first press's ceremony waits for the authenticator
        tab.open("/")
        tab.wait_for_autofill()
        before = len(asked)
        button = tab.page.get_by_role("button", name=re.compile("no name needed"))
        button.evaluate("b => { b.click(); b.click(); }")
        body = tab.page.locator("body")
        expect(body).to_have_attribute("data-state", "busy")
        tab.page.wait_for_timeout(1000)
        assert len(asked) - before == 1, asked[before:]  # one ceremony, no autofill request
        expect(body).to_have_attribute("data-autofill", "stopped")
        expect(body).to_have_attribute("data-state", "busy")


def test_after_a_refused_autofill_sign_in_the_name_field_offers_passkeys_again(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    """An autofill sign-in that was refused left autofill off until a reload (a button's
    offered it again). It is offered again when the person comes back to the name field."""
    import json

    from playwright.sync_api import Route

    tab = new_tab(demo())
    _signed_up_then_out(tab, "Katherine Johnson")
    refused: list[str] = []

    def refuse_once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=403, content_type="application/json", body=json.dumps({"error": "No."})
        )

    tab.page.route(lambda url: url.endswith("/api/signin/approve"), refuse_once)
    tab.open("/")  # the authenticator answers the autofill request at once
    tab.expect_error("No.")
    body = tab.page.locator("body")
    expect(body).to_have_attribute("data-autofill", "stopped")
    tab.page.get_by_role("button", name=re.compile("no name needed")).focus()
    tab.page.get_by_label("Your name").focus()  # back in the field: offered, and answered
    tab.expect_signed_in_as("Katherine Johnson")
