"""The demo's backend as a page (or an attacker) reaches it over HTTP: the account's
credentials never reach the browser, state changes come only from the site's own pages, and
a session cookie cannot be forged."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from .authenticators import PLATFORM, VirtualAuthenticator
from .conftest import Demo, Passkeyd
from .demo_tab import DemoTab


@pytest.fixture
def site(module_demo: Demo) -> Demo:
    return module_demo


@pytest.fixture
def http(site: Demo) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=site.url, trust_env=False, timeout=5) as client:
        yield client


def finish(client: httpx2.Client, site: Demo, options: dict[str, Any]) -> httpx2.Response:
    """Answer creation options with a new software authenticator, as the page would."""
    from tests.authenticator import Authenticator

    credential = Authenticator().create(options, site.url)
    return client.post("/api/passkeys/verify", json={"credential": credential})


def sign_up(client: httpx2.Client, site: Demo, name: str) -> httpx2.Response:
    options = client.post("/api/signup/options", json={"name": name}).json()["options"]
    return finish(client, site, options)


@contextmanager
def a_name_signed_up_while_a_stranger_holds_its_options(
    site: Demo, name: str
) -> Iterator[tuple[httpx2.Client, httpx2.Client, dict[str, Any]]]:
    """(stranger, owner, the stranger's held options): the stranger started signing up
    with `name` first; its owner then signed up with it, and is signed in."""

    headers = {"Origin": site.url}
    with (
        httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as stranger,
        httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as owner,
    ):
        held = stranger.post("/api/signup/options", json={"name": name}).json()["options"]
        signed_up = sign_up(owner, site, name)
        assert signed_up.status_code == 200, signed_up.text
        yield stranger, owner, held


def test_the_account_credentials_never_reach_the_browser(
    site: Demo, http: httpx2.Client, passkeyd: Passkeyd
) -> None:
    for path in ("/", "/signup", "/static/passkeyd.js", "/static/demo.js", "/static/demo.css"):
        response = http.get(path)
        assert response.status_code == 200, path
        assert passkeyd.auth_token not in response.text, path
        assert passkeyd.account_sid not in response.text, path
    options = http.post(
        "/api/signup/options", json={"name": "Ida Rhodes"}, headers={"Origin": site.url}
    )
    assert options.status_code == 200
    assert passkeyd.auth_token not in options.text
    assert options.json()["options"]["publicKey"]["rp"]["id"] == "localhost"


def test_pages_carry_a_content_security_policy(http: httpx2.Client) -> None:
    policy = http.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.parametrize("origin", [None, "http://evil.example"])
def test_state_changes_from_other_sites_are_refused(
    http: httpx2.Client, origin: str | None
) -> None:
    headers = {"Origin": origin} if origin else {}
    response = http.post("/api/signup/options", json={"name": "Mallory"}, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "This request did not come from this site's own pages."}
    signout = http.post("/signout", data={}, headers=headers)
    assert signout.status_code == 403


def test_a_forged_session_cookie_signs_nobody_in(
    site: Demo, new_tab: Callable[[Demo], DemoTab]
) -> None:
    tab = new_tab(site)
    VirtualAuthenticator(tab.page, PLATFORM)
    tab.sign_up("Evelyn Boyd")
    tab.expect_signed_in_as("Evelyn Boyd")

    [cookie] = [c for c in tab.page.context.cookies() if c["name"] == "passkeyd_demo"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    payload, signature = cookie["value"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["i"] = "someone-else-entirely"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tab.page.context.add_cookies([{**cookie, "value": f"{forged}.{signature}"}])

    tab.open("/account")
    assert tab.page.url == site.url + "/"  # sent to sign in: the cookie counts as none


def test_a_sign_up_finished_after_the_names_owner_joins_nothing(
    site: Demo, passkeyd: Passkeyd
) -> None:
    """Anyone may start signing up with a name nobody has finished signing up with, and
    keep the options. If the name's owner finishes first, finishing later must not add
    the stranger's passkey to the owner's account, nor sign the stranger in."""
    from tests.authenticator import Authenticator

    name = "Grace Hopper " + secrets.token_hex(3)
    with a_name_signed_up_while_a_stranger_holds_its_options(site, name) as (mallory, _, held):
        stranger = Authenticator()
        late = mallory.post(
            "/api/passkeys/verify", json={"credential": stranger.create(held, site.url)}
        )
        assert late.status_code == 409, late.text
        assert mallory.get("/account", follow_redirects=False).status_code in (302, 303)
        # The owner's account holds the owner's passkey only; the stranger's cannot sign in.
        sign_in = mallory.post("/api/signin/options", json={"name": name}).json()["options"]
        assert len(sign_in["publicKey"]["allowCredentials"]) == 1
        (stranger_id,) = stranger.credentials
        assert (
            sign_in["publicKey"]["allowCredentials"][0]["id"]
            != base64.urlsafe_b64encode(stranger_id).rstrip(b"=").decode()
        )


def test_a_body_over_the_limit_is_refused_before_it_ends(site: Demo) -> None:
    """The demo reads a request body only up to its limit: a client streaming a body that
    never ends (chunked, no length) gets 413 once it passes the limit, instead of being
    read into memory for as long as it sends."""
    import socket
    from urllib.parse import urlsplit

    from passkeyd.web.state import MAX_BODY

    url = urlsplit(site.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(
            b"POST /api/signup/options HTTP/1.1\r\nHost: " + url.netloc.encode()
            + b"\r\nOrigin: " + site.url.encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )  # fmt: skip
        chunk = b"x" * 4096
        for _ in range(MAX_BODY // len(chunk) + 1):  # past the limit, and no last chunk
            conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_a_cookie_copied_before_signing_out_signs_nobody_in(site: Demo) -> None:
    """Signing out ends the session, not only the cookie in the browser that signed out: a
    copy taken before (another tab's, a stolen one) no longer opens the account."""
    from tests.authenticator import Authenticator

    headers = {"Origin": site.url}
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as user:
        signed_up = sign_up(user, site, "Mary Kenneth Keller " + secrets.token_hex(3))
        assert signed_up.status_code == 200, signed_up.text
        copied = user.cookies["passkeyd_demo"]
        assert user.get("/account", follow_redirects=False).status_code == 200
        # Adding a passkey keeps the session (and so its id): the copy goes with it.
        options = user.post("/api/passkeys/options", json={}).json()["options"]
        added = user.post(
            "/api/passkeys/verify", json={"credential": Authenticator().create(options, site.url)}
        )
        assert added.status_code == 200, added.text
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert user.post("/signout", content=b"", headers=form).status_code == 303
    with httpx2.Client(
        base_url=site.url, trust_env=False, cookies={"passkeyd_demo": copied}
    ) as thief:
        assert thief.get("/account", follow_redirects=False).status_code in (302, 303)


def test_signing_in_as_another_user_ends_the_session_it_replaces(site: Demo) -> None:
    from tests.authenticator import Authenticator

    headers = {"Origin": site.url}
    names = [f"{n} {secrets.token_hex(3)}" for n in ("Annie Easley", "Dorothy Vaughan")]
    keys = [Authenticator(), Authenticator()]
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as browser:
        for name, key in zip(names, keys, strict=True):
            browser.cookies.clear()
            options = browser.post("/api/signup/options", json={"name": name}).json()["options"]
            verified = browser.post(
                "/api/passkeys/verify", json={"credential": key.create(options, site.url)}
            )
            assert verified.status_code == 200, verified.text
        first_session = browser.cookies["passkeyd_demo"]  # signed in as the second user
        options = browser.post("/api/signin/options", json={"name": names[0]}).json()["options"]
        approved = browser.post(
            "/api/signin/approve", json={"credential": keys[0].get(options, site.url)}
        )
        assert approved.status_code == 200, approved.text
        assert browser.get("/account", follow_redirects=False).status_code == 200
    with httpx2.Client(
        base_url=site.url, trust_env=False, cookies={"passkeyd_demo": first_session}
    ) as thief:
        assert thief.get("/account", follow_redirects=False).status_code in (302, 303)


def test_a_name_whose_passkeys_were_all_deleted_stays_its_owners(site: Demo) -> None:
    """A stranger signing up with it used to get the owner's identity: his passkey joined
    the owner's account, and he was signed in as the owner."""
    from tests.authenticator import Authenticator

    name = "Katherine Johnson " + secrets.token_hex(3)
    headers = {"Origin": site.url}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as owner:
        options = owner.post("/api/signup/options", json={"name": name}).json()["options"]
        verified = owner.post(
            "/api/passkeys/verify", json={"credential": Authenticator().create(options, site.url)}
        )
        assert verified.status_code == 200, verified.text
        account = owner.get("/account").text
        (sid,) = set(re.findall(r"/account/passkeys/(YF[0-9a-f]{32})/delete", account))
        deleted = owner.post(
            f"/account/passkeys/{sid}/delete", content=b"last=confirmed", headers=form
        )
        assert deleted.status_code == 303
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as stranger:
        r = stranger.post("/api/signup/options", json={"name": name.upper()})
        assert r.status_code == 409, r.text
        assert "already has a passkey" in r.json()["error"]


def test_a_sign_up_held_until_the_owner_deleted_every_passkey_joins_nothing(site: Demo) -> None:
    """The claim is checked when a sign-up finishes too, not only when it starts."""
    from tests.authenticator import Authenticator

    name = "Mary Jackson " + secrets.token_hex(3)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with a_name_signed_up_while_a_stranger_holds_its_options(site, name) as (
        stranger,
        owner,
        held,
    ):
        (sid,) = set(
            re.findall(r"/account/passkeys/(YF[0-9a-f]{32})/delete", owner.get("/account").text)
        )
        deleted = owner.post(
            f"/account/passkeys/{sid}/delete", content=b"last=confirmed", headers=form
        )
        assert deleted.status_code == 303
        late = stranger.post(
            "/api/passkeys/verify", json={"credential": Authenticator().create(held, site.url)}
        )
        assert late.status_code == 409, late.text
        assert stranger.get("/account", follow_redirects=False).status_code in (302, 303)


def test_a_sign_up_from_a_tab_left_open_while_signed_in_is_refused(site: Demo) -> None:
    """Tab B shows the sign-up page; tab A signs in (or up); B's sign-up was verified and
    kept while the page said it failed."""

    headers = {"Origin": site.url}
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as browser:
        held = browser.post(
            "/api/signup/options", json={"name": "Tab B " + secrets.token_hex(3)}
        ).json()["options"]
        tab_a = sign_up(browser, site, "Tab A " + secrets.token_hex(3))
        assert tab_a.status_code == 200, tab_a.text
        late = finish(browser, site, held)
        assert late.status_code == 409, late.text
        assert "Sign out first" in late.json()["error"]
        refused = browser.post("/api/signup/options", json={"name": "Tab C"})
        assert refused.status_code == 409
        # What the page said is what happened: tab B's passkey was not kept.
        sign_in = browser.post(
            "/api/signin/options", json={"name": held["publicKey"]["user"]["name"]}
        )
        assert sign_in.status_code == 404, sign_in.text


def test_sign_ins_started_at_once_in_two_tabs_both_finish(site: Demo) -> None:
    """Two tabs (or a tab's autofill request and its button, or several sign-in pages
    opened at once) ask for options together: each answer was made from the cookie its own
    request carried, the later dropped the other's challenge, and its sign-in was refused as
    started in another browser (and so was the first of five pages opened one after another).
    The ceremonies a browser started are kept by the server now, by browser id."""
    from tests.authenticator import Authenticator

    key = Authenticator()
    headers = {"Origin": site.url}
    with httpx2.Client(base_url=site.url, trust_env=False, headers=headers) as browser:
        assert "passkeyd_demo" in browser.get("/").cookies  # the page gives the browser its id
        name = "Radia Perlman " + secrets.token_hex(3)
        options = browser.post("/api/signup/options", json={"name": name}).json()["options"]
        verified = browser.post(
            "/api/passkeys/verify", json={"credential": key.create(options, site.url)}
        )
        assert verified.status_code == 200, verified.text
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert browser.post("/signout", content=b"", headers=form).status_code == 303
        assert browser.get("/").status_code == 200
        cookie = browser.cookies["passkeyd_demo"]
        tabs = []
        for _ in range(2):  # both carry the cookie as it was before either answer
            with httpx2.Client(
                base_url=site.url,
                trust_env=False,
                headers=headers,
                cookies={"passkeyd_demo": cookie},
            ) as tab:
                answer = tab.post("/api/signin/options", json={"name": name})
                assert answer.status_code == 200, answer.text
                tabs.append((answer.json()["options"], answer.cookies["passkeyd_demo"]))
        for _ in range(5):  # more pages opened meanwhile, each starting its own
            browser.cookies.set("passkeyd_demo", tabs[-1][1])
            browser.post("/api/signin/options", json={})
        first_options, _ = tabs[0]
        browser.cookies.clear()
        browser.cookies.set("passkeyd_demo", tabs[-1][1])  # the browser kept the later cookie
        approved = browser.post(
            "/api/signin/approve", json={"credential": key.get(first_options, site.url)}
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["redirect"] == "/account?notice=signed-in"


def test_a_page_opened_at_an_address_webauthn_refuses_says_where_to_open_it(
    site: Demo, new_tab: Callable[[Demo], DemoTab]
) -> None:
    """uvicorn's start-up line gives http://127.0.0.1:PORT; there, with the relying party
    localhost, every ceremony failed with "This page's address does not match the site's
    passkey settings", which did not say where to go. The page now says so at once, with a
    link to the same page at the site's origin, and offers no ceremony. (Not a redirect:
    behind a proxy that does not pass the Host header on, one looped.)"""
    tab = new_tab(site)
    VirtualAuthenticator(tab.page, PLATFORM)
    elsewhere = site.url.replace("://localhost:", "://127.0.0.1:")
    tab.page.goto(elsewhere + "/signup?from=log")
    error = tab.page.locator("#error")
    expect(error).to_contain_text("Passkeys for this site work only at its own address.")
    link = error.get_by_role("link")
    expect(link).to_have_attribute("href", site.url + "/signup?from=log")
    expect(tab.page.get_by_role("button", name="Create a passkey")).to_be_disabled()
    tab.shot("wrong-address")
    link.click()
    expect(tab.page).to_have_url(site.url + "/signup?from=log")
    expect(error).to_be_hidden()
    expect(tab.page.get_by_role("button", name="Create a passkey")).to_be_enabled()


def test_the_last_passkey_is_deleted_only_when_the_page_asked_first(
    site: Demo, passkeyd: Passkeyd
) -> None:
    """The page asks before deleting the last passkey, but only a page that knows it is the
    last: one rendered while there were two, the other deleted since in another tab, deleted
    the last without asking. The server now refuses a delete of the last passkey unless the
    page says it asked (last=confirmed), and shows the account page, which asks."""
    name = "Annie Easley " + secrets.token_hex(3)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx2.Client(base_url=site.url, trust_env=False, headers={"Origin": site.url}) as user:
        sign_up(user, site, name)
        (sid,) = set(
            re.findall(r"/account/passkeys/(YF[0-9a-f]{32})/delete", user.get("/account").text)
        )
        stale = user.post(f"/account/passkeys/{sid}/delete", content=b"", headers=form)
        assert stale.status_code == 409
        assert "That is your last passkey" in stale.text and "data-last" in stale.text
        assert [f["sid"] for f in passkeyd.verified_factors(site.service_sid) if f["sid"] == sid]
        asked = user.post(
            f"/account/passkeys/{sid}/delete", content=b"last=confirmed", headers=form
        )
        assert asked.status_code == 303
        assert not [f for f in passkeyd.verified_factors(site.service_sid) if f["sid"] == sid]


@pytest.mark.parametrize("path", ["/", "/signup"])
def test_a_form_sent_before_the_page_s_script_ran_says_why_and_keeps_the_name_private(
    http: httpx2.Client, path: str
) -> None:
    """The forms had no method: sent before demo.js took them over, they went as GET, the
    name in the address and the history, and nothing said why nothing happened."""
    r = http.post(path, data={"name": "Nia Example"}, follow_redirects=False)
    assert r.status_code == 400
    assert "passkeys need it" in r.text and "Nia Example" not in r.text
    assert f'method="post" action="{path}"' in http.get(path).text


def test_added_passkeys_are_labelled_apart_from_the_first(site: Demo) -> None:
    """Every passkey was labelled with the account's name: two of them could not be told apart
    on the account page, nor in their Delete buttons' labels."""
    name = "Dorothy Vaughan " + secrets.token_hex(3)
    with httpx2.Client(base_url=site.url, trust_env=False, headers={"Origin": site.url}) as user:
        assert sign_up(user, site, name).status_code == 200
        for _ in range(2):
            options = user.post("/api/passkeys/options", json={}).json()["options"]
            assert finish(user, site, options).status_code == 200
        page = user.get("/account").text
    first, *added = re.findall(r'aria-label="Delete passkey ([^"]*)"', page)
    # The added ones by their model, as passkeyd names it (the software authenticator says
    # it is Apple's), numbered: "Apple Passwords", "Apple Passwords 2".
    assert first == name and len(added) == 2, (first, added)
    assert added[0] != name and added[1] == f"{added[0]} 2", added
