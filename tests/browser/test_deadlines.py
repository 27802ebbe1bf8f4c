"""A tab with no authenticator (and no WebAuthn.enable) never settles a ceremony: the page's
own deadline ends it with a sentence, and the buttons work again."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from .conftest import Demo
from .demo_tab import DemoTab


def test_ceremonies_that_never_settle_end_at_the_page_deadline(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    site = demo("--ceremony-timeout", "1.5")
    tab = new_tab(site)

    tab.open("/signup")
    tab.page.get_by_label("Your name").fill("Radia Perlman")
    button = tab.page.get_by_role("button", name="Create a passkey")
    button.focus()
    button.press("Enter")  # from the keyboard
    # The prompt's sentence once the options are there ("Getting ready…" while they come:
    # it said "follow your browser's prompt" before the browser had one to show).
    expect(tab.page.locator("#progress")).to_have_text(
        "Follow your browser's prompt to create the passkey…"
    )
    tab.shot("1-waiting-for-the-authenticator")
    tab.expect_error("Creating the passkey took too long; try again.")
    expect(button).to_be_enabled()
    # The keyboard focus is back where the person was (disabling the button while the
    # ceremony ran took it), not at the top of the page.
    expect(button).to_be_focused()
    tab.shot("2-sign-up-deadline")

    tab.open("/")
    tab.wait_for_autofill()
    tab.sign_in_without_name()
    tab.expect_error("That sign-in took too long; try again.")
    tab.shot("3-sign-in-deadline")
    # The name field offers passkeys again (its request stayed stopped until a reload).
    expect(tab.page.locator("body")).to_have_attribute("data-autofill", "waiting")


def test_a_visitor_without_a_passkey_sees_no_error_before_doing_anything(
    module_demo: Demo, new_tab: Callable[[Demo], DemoTab]
) -> None:
    """The sign-in page's autofill request, which nobody started, is refused at once by an
    authenticator holding no passkey for the site: that is no error to show."""
    from .authenticators import PLATFORM, VirtualAuthenticator

    tab = new_tab(module_demo)
    VirtualAuthenticator(tab.page, PLATFORM)
    tab.open("/")
    expect(tab.page.locator("body")).to_have_attribute("data-autofill", "failed")
    expect(tab.page.locator("#error")).to_be_hidden()
