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

    tab.sign_up("Radia Perlman")
    expect(tab.page.locator("#progress")).to_be_visible()
    tab.shot("1-waiting-for-the-authenticator")
    tab.expect_error("Creating the passkey took too long; try again.")
    expect(tab.page.get_by_role("button", name="Create a passkey")).to_be_enabled()
    tab.shot("2-sign-up-deadline")

    tab.open("/")
    tab.wait_for_autofill()
    tab.sign_in_without_name()
    tab.expect_error("That sign-in took too long; try again.")
    tab.shot("3-sign-in-deadline")
