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
    rename.fill("   ")
    second.page.get_by_role("button", name="Rename").click()
    second.expect_error("Give the passkey a name.")
    # Answered at the form's POST address, shown as /account: a reload posted it again.
    expect(second.page).to_have_url(site.url + "/account")
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
    # The page told this tab's device that the account has no passkey left
    # (signalAllAcceptedCredentials with none), and it dropped it. (A last passkey deleted
    # was never signalled: the device offered it until a sign-in was refused.)
    _until_gone(second, second_key)

    # The first tab's device still holds its copy: signing in with it is refused.
    approvals: list[int] = []
    first.page.on(
        "response",
        lambda r: approvals.append(r.status) if r.url.endswith("/api/signin/approve") else None,
    )
    first.sign_in_without_name()
    first.expect_error(
        "This passkey is not registered here (it may have been deleted). "
        "Use another passkey, or create an account."
    )
    first.shot("3-deleted-passkey-refused")
    # The page told the browser that the service no longer has this user's passkey
    # (signalUnknownCredential): the device no longer holds it, and stops offering it. (It
    # was offered at every sign-in after its deletion: the name field's autofill offered it
    # again at once, refused again.)
    _until_gone(first, first_key)
    first.page.wait_for_timeout(500)
    assert approvals == [404], approvals  # nothing more was offered
    body = first.page.locator("body")
    # (the virtual authenticator, holding nothing for this site now, refuses at once the
    # autofill request the page made again)
    expect(body).to_have_attribute("data-autofill", "failed")
    expect(body).to_have_attribute("data-state", "error")

    with first_key.untouched():  # (the autofill request offered again after it waits)
        first.sign_in_with_name("Frances Allen")
        first.expect_error(
            "There is no passkey for that name yet. Check the name, or create an account."
        )
        expect(body).to_have_attribute("data-autofill", "waiting")
        first.shot("4-name-without-passkeys-refused")


def _until_gone(tab: DemoTab, key: VirtualAuthenticator) -> None:
    for _ in range(50):
        if not key.credentials():
            break
        tab.page.wait_for_timeout(100)
    assert key.credentials() == []


def test_a_passkey_of_another_service_on_the_same_rp_id_is_refused_not_deleted(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    """Two services whose RP id is the same (staging and production; every demo on
    localhost): a passkey of one, offered to the other, is unknown there (60390). The page
    told the browser so (signalUnknownCredential) for any 60390, and the device deleted a
    passkey that works at the other service: its owner was locked out there."""
    production, staging = demo(), demo()
    tab = new_tab(production)
    key = VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up("Barbara Liskov")
    tab.expect_signed_in_as("Barbara Liskov")
    [credential] = key.credentials()

    other = new_tab(staging)
    other_key = VirtualAuthenticator(other.page, PLATFORM)
    other_key.add_credential(credential)
    with other_key.untouched():
        other.open("/")
        other.wait_for_autofill()
    other.sign_in_without_name()
    other.expect_error(
        "This passkey is not registered here (it may have been deleted). "
        "Use another passkey, or create an account."
    )
    other.page.wait_for_timeout(1000)  # (the signal, had there been one, took under 100 ms)
    assert [c["credentialId"] for c in other_key.credentials()] == [credential["credentialId"]]

    # And it still signs in where it was made, from this device too.
    fresh = new_tab(production)
    fresh_key = VirtualAuthenticator(fresh.page, PLATFORM)
    fresh_key.add_credential(other_key.credentials()[0])
    with fresh_key.untouched():
        fresh.open("/")
        fresh.wait_for_autofill()
    fresh.sign_in_without_name()
    fresh.expect_signed_in_as("Barbara Liskov")


def test_the_account_page_tells_the_device_which_passkeys_the_account_still_has(
    demo: Callable[..., Demo], new_tab: Callable[[Demo], DemoTab]
) -> None:
    """A passkey deleted on the account page stayed on the device, offered at every sign-in.
    The page now gives the browser the passkeys the account still has
    (signalAllAcceptedCredentials), and the device drops the others it holds for the user."""
    site = demo()
    tab = new_tab(site)
    key = VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up("Grace Hopper")
    tab.expect_signed_in_as("Grace Hopper")
    [first] = key.credentials()
    # A second passkey, made by the same device once the first is taken off it (a device
    # makes one passkey per account: the first would be excluded). The account has both.
    key.cdp.send(
        "WebAuthn.removeCredential",
        {"authenticatorId": key.id, "credentialId": first["credentialId"]},
    )
    tab.page.get_by_role("button", name="Add a passkey").click()
    tab.expect_notice("Passkey added.")
    [second] = key.credentials()

    def b64url(standard: str) -> str:
        return standard.replace("+", "-").replace("/", "_").rstrip("=")

    listed = (tab.page.locator("#accepted").get_attribute("data-credential-ids") or "").split()
    assert sorted(listed) == sorted([b64url(first["credentialId"]), b64url(second["credentialId"])])
    # Deleting the second on the account page: the device drops it.
    index = listed.index(b64url(second["credentialId"]))
    tab.page.locator("li.passkey").nth(index).locator("form.delete button").click()
    tab.expect_notice("Passkey deleted.")
    for _ in range(50):
        if not key.credentials():
            break
        tab.page.wait_for_timeout(100)
    assert key.credentials() == []
    accepted = tab.page.locator("#accepted")
    assert accepted.get_attribute("data-credential-ids") == b64url(first["credentialId"])
    assert accepted.get_attribute("data-user-id") == b64url(first["userHandle"])
