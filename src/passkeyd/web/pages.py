"""The demo's HTML: sign in, sign up, and the signed-in account page.

Pages are plain HTML with no inline script (the Content-Security-Policy allows only this
site's own scripts); `demo.js` runs the ceremonies, and the sentences it may show travel in
a JSON data block. Every value from a user or from passkeyd goes through `escape`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from html import escape

from .messages import page_messages
from .passkeys import Passkey
from .users import MAX_NAME_LENGTH

# The field's limit counts UTF-16 units, the server's characters (an emoji is 2 units, é typed
# as e and its accent 2 characters until joined): the field allows what the server may
# accept, and the server says when a name is too long.
MAX_NAME_FIELD = 4 * MAX_NAME_LENGTH

_KEY_ICON = (
    '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M14 3a7 7 0 0 0-6.7'
    " 9.1L2 17.4V22h4.6v-2.3h2.3v-2.3h2.3l1.7-1.7A7 7 0 1 0 14 3zm2.3 4.6a1.8 1.8 0 1 1 0"
    ' 3.6 1.8 1.8 0 0 1 0-3.6z"/></svg>'
)


@dataclass(frozen=True, slots=True)
class PageContext:
    """What every page shows or passes to its script."""

    rp_id: str
    service_sid: str
    passkeyd_url: str
    ceremony_timeout_ms: int
    user_verification: str
    # The service's web origins as a browser writes them (`location.origin`): a page opened
    # elsewhere (127.0.0.1 where the relying party is localhost) says where to go.
    origins: tuple[str, ...] = ()


def _json_block(data: object) -> str:
    # "<" escaped so that no string can close the <script> element early.
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _alerts(notice: str | None, error: str | None) -> str:
    notice_html = (
        f'<p class="notice" id="notice" role="status">{escape(notice)}</p>' if notice else ""
    )
    hidden = "" if error else " hidden"
    return (
        f"{notice_html}"
        f'<p class="alert" id="error" role="alert"{hidden}>{escape(error or "")}</p>'
        '<p class="progress" id="progress" role="status" hidden></p>'
    )


def layout(ctx: PageContext, *, page: str, title: str, main: str, nav: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · passkeyd demo</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/demo.css">
<script type="module" src="/static/demo.js"></script>
</head>
<body data-page="{escape(page)}" data-state="idle" data-rp-id="{escape(ctx.rp_id)}"
  data-origins="{escape(" ".join(ctx.origins))}"
  data-ceremony-timeout-ms="{ctx.ceremony_timeout_ms}"
  data-user-verification="{escape(ctx.user_verification)}">
<header class="bar">
<a class="brand" href="/">{_KEY_ICON}<span>passkeyd demo</span></a>{nav}
</header>
<main class="card">
{main}
</main>
<footer class="foot">Relying party <code>{escape(ctx.rp_id)}</code> ·
Verify service <code>{escape(ctx.service_sid)}</code> ·
passkeyd at <code>{escape(ctx.passkeyd_url)}</code></footer>
<script type="application/json" id="messages">{_json_block(page_messages())}</script>
</body>
</html>
"""


def signin_page(ctx: PageContext, *, notice: str | None = None, error: str | None = None) -> str:
    main = f"""<h1>Sign in</h1>
<p class="lead">Use a passkey: the one on this device, on your phone, or on a security key.</p>
{_alerts(notice, error)}
<form id="signin-form" class="stack" method="post" action="/" novalidate>
  <label for="name">Your name</label>
  <input id="name" name="name" type="text" autocomplete="username webauthn"
    autocapitalize="none" spellcheck="false" maxlength="{MAX_NAME_FIELD}"
    placeholder="Ada Lovelace">
  <p class="hint">Leave it empty to pick from the passkeys your device offers.</p>
  <button id="signin" class="primary" type="submit" data-ceremony>Sign in</button>
</form>
<div class="or"><span>or</span></div>
<button id="signin-passkey" class="secondary wide" type="button" data-ceremony>
Sign in with a passkey, no name needed</button>
<p class="switch">New here? <a href="/signup">Create an account</a></p>"""
    return layout(ctx, page="signin", title="Sign in", main=main)


def signup_page(ctx: PageContext, error: str | None = None) -> str:
    main = f"""<h1>Create an account</h1>
<p class="lead">No password to remember: your device makes a passkey for this site.</p>
{_alerts(None, error)}
<form id="signup-form" class="stack" method="post" action="/signup" novalidate>
  <label for="name">Your name</label>
  <input id="name" name="name" type="text" autocomplete="username" required
    maxlength="{MAX_NAME_FIELD}" placeholder="Ada Lovelace">
  <p class="hint">Your passkey will carry this name, so you can tell it apart later.</p>
  <button id="signup" class="primary" type="submit" data-ceremony>Create a passkey</button>
</form>
<p class="switch">Already have a passkey? <a href="/">Sign in</a></p>"""
    return layout(ctx, page="signup", title="Create an account", main=main)


def _date(iso: str | None) -> str:
    if not iso:
        return "never"
    try:
        parsed = time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return iso
    return time.strftime("%d %b %Y, %H:%M UTC", parsed).lstrip("0")


# How a status FIDO reports a model in is told to its users.
_STATUS_SAYS = {
    "REVOKED": "revoked",
    "USER_VERIFICATION_BYPASS": "able to skip user verification",
    "ATTESTATION_KEY_COMPROMISE": "compromised",
    "USER_KEY_REMOTE_COMPROMISE": "compromised",
    "USER_KEY_PHYSICAL_COMPROMISE": "compromised",
}


def _standing(p: Passkey) -> str:
    """A warning on a passkey whose model the FIDO metadata reports revoked or compromised
    (the factor's `metadata.authenticator_status`): its user should replace it."""
    if p.authenticator_status is None:
        return ""
    says = _STATUS_SAYS.get(p.authenticator_status, "no longer in good standing")
    return (
        f'\n  <p class="alert standing" role="status">The FIDO Alliance reports this'
        f" authenticator model as {escape(says)}"
        f" (<code>{escape(p.authenticator_status)}</code>). Add a passkey from another"
        " device, then delete this one.</p>"
    )


def _sign_in(p: Passkey) -> str:
    """How the passkey signs in, when its browser said (`metadata.discoverable`): one that
    is discoverable is offered with no name typed (autofill, "Sign in with a passkey")."""
    if p.discoverable is None:
        return ""
    how = "without a name" if p.discoverable else "with your name"
    return f'\n    <dt>Signs in</dt><dd class="sign-in">{how}</dd>'


def _passkey_item(p: Passkey, *, last: bool = False) -> str:
    sid = escape(p.sid)
    name = escape(p.friendly_name)
    last_mark = " data-last" if last else ""
    return f"""<li class="passkey" data-sid="{sid}">
  <div class="passkey-head">{_KEY_ICON}
    <span class="passkey-name">{escape(p.friendly_name)}</span></div>
  <dl class="facts">
    <dt>Authenticator</dt><dd class="authenticator">{escape(p.authenticator)}</dd>
    <dt>Added</dt><dd>{escape(_date(p.date_created))}</dd>
    <dt>Last used</dt><dd>{escape(_date(p.date_last_used))}</dd>{_sign_in(p)}
  </dl>{_standing(p)}
  <div class="actions">
    <form class="rename" method="post" action="/account/passkeys/{sid}/rename">
      <label class="visually-hidden" for="rename-{sid}">New name for this passkey</label>
      <input id="rename-{sid}" name="FriendlyName" value="{escape(p.friendly_name)}"
        maxlength="{MAX_NAME_FIELD}" required>
      <button class="secondary" type="submit" aria-label="Rename passkey {name}">Rename</button>
    </form>
    <form class="delete" method="post" action="/account/passkeys/{sid}/delete"{last_mark}>
      <button class="danger" type="submit" aria-label="Delete passkey {name}">Delete</button>
    </form>
  </div>
</li>"""


def _accepted(entity: str | None, passkeys: list[Passkey]) -> str:
    """The user's passkeys for demo.js to tell the browser (signalAllAcceptedCredentials),
    none included, so that a device drops the last one deleted too: the user handle is the
    base64url of the entity SID, as in the creation options."""
    if entity is None:
        return ""
    user_id = base64.urlsafe_b64encode(entity.encode()).rstrip(b"=").decode()
    ids = " ".join(p.credential_id for p in passkeys if p.credential_id)
    return (
        f'<div id="accepted" hidden data-user-id="{escape(user_id)}"'
        f' data-credential-ids="{escape(ids)}"></div>'
    )


def account_page(
    ctx: PageContext,
    *,
    name: str,
    passkeys: list[Passkey] | None,
    entity_sid: str | None = None,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    """`passkeys` None: they could not be read (the error says why)."""
    if passkeys is None:
        listing = '<p class="empty">Your passkeys could not be loaded.</p>'
    elif passkeys:
        items = "\n".join(_passkey_item(p, last=len(passkeys) == 1) for p in passkeys)
        listing = f'<ul class="passkeys">{items}</ul>' + _accepted(entity_sid, passkeys)
    else:
        listing = (
            '<p class="empty">You have no passkeys left. Add one now, or you will not be able'
            " to sign in again.</p>" + _accepted(entity_sid, passkeys)
        )
    nav = (
        '<form class="signout" method="post" action="/signout">'
        '<button class="link" id="signout" type="submit">Sign out</button></form>'
    )
    main = f"""<h1>Hello, <span id="user-name">{escape(name)}</span></h1>
<p class="lead">You are signed in with a passkey.</p>
{_alerts(notice, error)}
<h2>Your passkeys</h2>
{listing}
<button id="add-passkey" class="primary" type="button" data-ceremony>Add a passkey</button>"""
    return layout(ctx, page="account", title="Your account", main=main, nav=nav)
