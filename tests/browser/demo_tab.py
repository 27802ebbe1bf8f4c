"""A tab of the demo as a person uses it: open pages, type, press buttons, read what the page
says, and keep a screenshot of each state under test-artifacts/screenshots/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, expect

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@dataclass
class DemoTab:
    page: Page
    base_url: str
    test_name: str

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base_url + path)

    def shot(self, state: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{self.test_name}-{state}").strip("-")
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # --- actions --------------------------------------------------------------------------

    def sign_up(self, name: str) -> None:
        self.open("/signup")
        self.page.get_by_label("Your name").fill(name)
        self.page.get_by_role("button", name="Create a passkey").click()

    def wait_for_autofill(self) -> None:
        """Until the sign-in page's autofill request is open (or autofill is unavailable),
        and has reached the authenticator: the page says "waiting" once it has made the
        request, which then crosses from the renderer to the browser process; a test that
        let its authenticator answer in that gap saw the request answered (twice in
        clean-clone CI, under load)."""
        body = self.page.locator("body")
        expect(body).to_have_attribute("data-autofill", re.compile("waiting|unavailable"))
        if body.get_attribute("data-autofill") == "waiting":
            self.page.wait_for_timeout(300)

    def sign_in_with_name(self, name: str) -> None:
        self.page.get_by_label("Your name").fill(name)
        self.page.get_by_role("button", name="Sign in", exact=True).click()

    def sign_in_without_name(self) -> None:
        self.page.get_by_role("button", name=re.compile("no name needed")).click()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        expect(self.page).to_have_url(re.compile(r"/\?notice=signed-out$"))

    # --- what the page says ------------------------------------------------------------------

    def expect_signed_in_as(self, name: str) -> None:
        expect(self.page).to_have_url(re.compile(r"/account"))
        expect(self.page.locator("#user-name")).to_have_text(name)

    def expect_error(self, sentence: str) -> None:
        expect(self.page.get_by_role("alert")).to_have_text(sentence)

    def expect_notice(self, sentence: str) -> None:
        expect(self.page.locator("#notice")).to_have_text(sentence)

    def passkey_names(self) -> list[str]:
        return self.page.locator(".passkey-name").all_inner_texts()
