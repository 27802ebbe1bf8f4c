"""A passkey used from a second tab, renamed, deleted; then signing in with it fails with a
sentence, with a name and without one."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Dialog, expect

from .authenticators import PLATFORM, VirtualAuthenticator
from .conftest import Demo, Passkeyd
from .demo_tab import DemoTab


def test_passkey_from_another_tab_renamed_deleted_then_refused(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab], passkeyd: Passkeyd
) -> None:
    site = demo()
    first = new_tab(site)
    first_key = VirtualAuthenticator(first.page, PLATFORM)
    first.sign_up("Frances Allen")
    first.expect_signed_in_as("Frances Allen")
    with first_key.untouched():
        first.sign_out()
        first.wait_for_autofill()

    # A virtual authenticator belongs to the tab that added it: the second tab gets its own,
    # holding a copy of the first tab's passkey.
    second = new_tab(site)
    second_key = VirtualAuthenticator(second.page, PLATFORM)
    [credential] = first_key.credentials()
    second_key.add_credential(credential)
    with second_key.untouched():
        second.open("/")
        second.wait_for_autofill()
    second.sign_in_without_name()
    second.expect_signed_in_as("Frances Allen")

    rename = second.page.get_by_label("New name for this passkey")
    rename.fill("Work laptop")
    second.page.get_by_role("button", name="Rename").click()
    second.expect_notice("Passkey renamed.")
    assert second.passkey_names() == ["Work laptop"]
    second.shot("1-renamed")

    # The last passkey: the page asks first, and a "no" keeps it.
    asked: list[str] = []

    def answer(accept: bool) -> Callable[[Dialog], None]:
        def handle(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    delete = second.page.get_by_role("button", name="Delete passkey Work laptop")
    second.page.once("dialog", answer(False))
    delete.click()
    second.page.wait_for_timeout(300)
    assert asked == [
        "Delete your last passkey? You will not be able to sign in again until you add one."
    ]
    assert second.passkey_names() == ["Work laptop"]
    second.page.once("dialog", answer(True))
    delete.click()
    second.expect_notice("Passkey deleted.")
    assert second.passkey_names() == []
    second.shot("2-deleted")
    assert passkeyd.verified_factors(site.service_sid) == []

    with second_key.untouched():
        second.sign_out()
        second.wait_for_autofill()
    approvals: list[int] = []
    second.page.on(
        "response",
        lambda r: approvals.append(r.status) if r.url.endswith("/api/signin/approve") else None,
    )
    second.sign_in_without_name()
    second.expect_error(
        "This passkey is not registered here (it may have been deleted). "
        "Use another passkey, or create an account."
    )
    second.shot("3-deleted-passkey-refused")
    # The name field offers passkeys again; the virtual authenticator answers that request
    # at once (headless Chromium has no autofill list to pick from), refused in turn, and
    # passkeys wait for the name field's next focus.
    for _ in range(100):
        if len(approvals) >= 2:
            break
        second.page.wait_for_timeout(100)
    assert len(approvals) == 2 and min(approvals) >= 400, approvals  # both refused
    body = second.page.locator("body")
    expect(body).to_have_attribute("data-autofill", "stopped")
    expect(body).to_have_attribute("data-state", "error")

    with second_key.untouched():  # (the autofill request offered again after it waits)
        second.sign_in_with_name("Frances Allen")
        second.expect_error(
            "There is no passkey for that name yet. Check the name, or create an account."
        )
        expect(body).to_have_attribute("data-autofill", "waiting")
        second.shot("4-name-without-passkeys-refused")
