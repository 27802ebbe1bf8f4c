"""Every sentence the demo shows a person, in one place: passkeyd's (Twilio's) error codes, the
browser's WebAuthn exceptions, the demo's own refusals, and the notices after an action.

Pages get the browser and app tables as JSON, so the page script shows the same sentences
without a copy of them.
"""

from __future__ import annotations

from typing import Any

ALREADY_REGISTERED = "This passkey is already registered."
COULD_NOT_VERIFY = "Your authenticator could not verify you."
NO_PASSKEY_FOR_NAME = "There is no passkey for that name yet. Check the name, or create an account."
SOMETHING_WENT_WRONG = "Something went wrong on our side. Try again in a moment."

# (Twilio code, a phrase of passkeyd's message or "" for any) -> sentence; the first match wins.
# passkeyd names the WebAuthn step that refused in the message, which lets one code read as
# more than one sentence.
VERIFY_ERRORS: tuple[tuple[int, str, str], ...] = (
    (60311, "already registered", ALREADY_REGISTERED),
    (60311, "user verified", COULD_NOT_VERIFY),
    (60311, "", "Your passkey could not be registered. Try again, or use another authenticator."),
    (60324, "user verified", COULD_NOT_VERIFY),
    (60324, "allowCredentials", "This passkey does not belong to that account."),
    (60324, "another user", "This passkey does not belong to that account."),
    (60324, "", "Your passkey could not be checked. Try again, or use another passkey."),
    (60322, "", "That sign-in was already used. Try again."),
    (60323, "", "That sign-in took too long; try again."),
    (
        60390,
        "",
        "This passkey is not registered here (it may have been deleted). "
        "Use another passkey, or create an account.",
    ),
    (60391, "", "That sign-in is no longer valid. Try again."),
    (60392, "", NO_PASSKEY_FOR_NAME),
    (60318, "", NO_PASSKEY_FOR_NAME),
    (60383, "", "This passkey is already set up. Sign in with it."),
    (
        60385,
        "algorithm",
        "Your authenticator made a kind of passkey this site does not accept."
        " Try another authenticator.",
    ),
    (60382, "", "This passkey belongs to another website."),
    (60367, "", "That account cannot use passkeys here."),
)

# What navigator.credentials.create / .get threw (DOMException.name) -> sentence.
# "TimeoutError" is the page's own deadline; "Unsupported" is a browser without WebAuthn.
# Browsers say only NotAllowedError both when the person cancels and when the authenticator
# cannot verify them; where the service requires verification, the likelier cause is said.
UV_REQUIRED_REFUSED = (
    "Your authenticator could not verify you. This site needs a passkey that checks your"
    " fingerprint, face, PIN or screen lock: try again, or use another authenticator."
)
BROWSER_ERRORS: dict[str, dict[str, str]] = {
    "create": {
        "InvalidStateError": ALREADY_REGISTERED,
        "NotAllowedError": "Your authenticator could not verify you, or the request was"
        " cancelled. Try again.",
        "NotAllowedError:uv-required": UV_REQUIRED_REFUSED,
        "TimeoutError": "Creating the passkey took too long; try again.",
        "SecurityError": "This page's address does not match the site's passkey settings.",
        "NotSupportedError": "Your authenticator cannot make the kind of passkey this site asks"
        " for.",
        "Unsupported": "This browser does not support passkeys.",
        "default": "Your browser could not create the passkey. Try again.",
    },
    "get": {
        # On sign-in this also means the device has no passkey for the site (a deleted one,
        # or one on another device): saying only that the authenticator failed misled.
        "NotAllowedError": "No passkey was used: the request was cancelled, this device has"
        " no passkey for this site, or it could not verify you. Try again, or use another"
        " device.",
        "NotAllowedError:uv-required": "No passkey was used: the request was cancelled, or"
        " this device has no passkey for this site that checks your fingerprint, face, PIN or"
        " screen lock, which this site needs. Try again, or use another device.",
        "TimeoutError": "That sign-in took too long; try again.",
        "SecurityError": "This page's address does not match the site's passkey settings.",
        "NotSupportedError": "Your authenticator cannot sign in to this site.",
        "Unsupported": "This browser does not support passkeys.",
        "default": "Your browser could not use the passkey. Try again.",
    },
}

# The demo's own refusals, keyed by what went wrong.
APP_ERRORS: dict[str, str] = {
    "name_missing": "Enter your name.",
    "name_too_long": "Use a name of at most 64 characters.",
    "name_invalid": "Use letters, digits, spaces and punctuation in your name.",
    "name_taken": "That name already has a passkey. Sign in instead, or choose another name.",
    "name_unknown": "There is no account with that name. Check the name, or create an account.",
    "passkey_name_missing": "Give the passkey a name.",
    "passkey_name_too_long": "Use a passkey name of at most 64 characters.",
    "passkey_name_invalid": "Use letters, digits, spaces and punctuation in the passkey name.",
    "passkey_gone": "That passkey no longer exists.",
    "signed_out": "You are not signed in. Sign in, then try again.",
    "signed_in_already": "You are signed in already in this browser."
    " Sign out first to create another account.",
    "not_this_browser": "That passkey request was started in another browser window. Try again.",
    "not_approved": "That sign-in was not approved. Try again.",
    "bad_request": "The page sent something the server did not understand. Reload and try again.",
    "cross_site": "This request did not come from this site's own pages.",
    "unreachable": "The sign-in service cannot be reached right now. Try again in a moment.",
    "network": "The server cannot be reached. Check your connection and try again.",
    "unexpected": SOMETHING_WENT_WRONG,
    "last_passkey": "That is your last passkey: deleted, it leaves you no way to sign in."
    " To delete it anyway, press Delete again and confirm.",
    "wrong_address": "Passkeys for this site work only at its own address. Open it there:",
    "needs_javascript": "This page is still loading, or JavaScript is off: passkeys need"
    " it. Wait a moment (or turn JavaScript on), then try again.",
    # (Not a refusal: the question before deleting the last passkey.)
    "confirm_delete_last": "Delete your last passkey? You will not be able to sign in"
    " again until you add one.",
}

# Shown while a ceremony runs: asking the server to start it, the browser's own passkey
# prompt, then the server checking what the authenticator answered.
PROGRESS: dict[str, str] = {
    "preparing": "Getting ready…",
    "create": "Follow your browser's prompt to create the passkey…",
    "get": "Follow your browser's prompt to use your passkey…",
    "checking": "Checking your passkey…",
}

# Shown on the next page after an action succeeded, keyed by the `notice` query parameter.
NOTICES: dict[str, str] = {
    "signed-up": "Your passkey is ready, and you are signed in.",
    "signed-in": "You are signed in.",
    "added": "Passkey added.",
    "renamed": "Passkey renamed.",
    "deleted": "Passkey deleted.",
    "signed-out": "You are signed out.",
}


def verify_sentence(code: int, message: str) -> str:
    """The sentence for a passkeyd refusal; SOMETHING_WENT_WRONG when no row matches (e.g.
    authentication or configuration errors, which are the operator's to fix, not the user's)."""
    for row_code, phrase, sentence in VERIFY_ERRORS:
        if row_code == code and phrase in message:
            return sentence
    return SOMETHING_WENT_WRONG


def page_messages() -> dict[str, Any]:
    """The tables a page script needs."""
    return {"browser": BROWSER_ERRORS, "app": APP_ERRORS, "progress": PROGRESS}
