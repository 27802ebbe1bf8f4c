"""The demo's names (as people write them) and the sentences its refusals read as."""

from __future__ import annotations

import pytest

from passkeyd.web.messages import APP_ERRORS, SOMETHING_WENT_WRONG
from passkeyd.web.state import refusal_of
from passkeyd.web.users import InvalidName, clean_name
from passkeyd.web.verify import VerifyError


@pytest.mark.parametrize(
    "name",
    [
        "Grace 👩\u200d💻",  # an emoji sequence joined by U+200D
        "علی\u200cرضا",  # Persian, with the zero-width non-joiner its spelling needs
        "Ada 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # a tag sequence
    ],
)
def test_names_with_joiners_are_names(name: str) -> None:
    """They were refused: every format character was (found by the demo review)."""
    assert clean_name(name) == name


@pytest.mark.parametrize("name", ["Ada\u202eecalevoL", "Ada\u200bLovelace", "Ada\x00"])
def test_invisible_or_reordering_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        clean_name(name)


def test_a_request_passkeyd_found_malformed_is_not_blamed_on_the_server() -> None:
    """A credential passkeyd cannot read (400) read "Something went wrong on our side"."""
    refusal = refusal_of(VerifyError(400, 60380, "Invalid credential: response is missing"))
    assert (refusal.status, refusal.sentence) == (400, APP_ERRORS["bad_request"])
    server_side = refusal_of(VerifyError(500, 20500, "Internal error"))
    assert (server_side.status, server_side.sentence) == (502, SOMETHING_WENT_WRONG)


def test_the_name_fields_take_every_name_the_server_takes() -> None:
    """The fields' maxlength (UTF-16 units) cut 40 emoji to 32 without a word, a name the
    server (64 characters) takes."""
    from passkeyd.web.pages import MAX_NAME_FIELD
    from passkeyd.web.users import MAX_NAME_LENGTH

    longest = "😀" * MAX_NAME_LENGTH  # each 2 UTF-16 units
    assert clean_name(longest) == longest
    assert len(longest.encode("utf-16-le")) // 2 <= MAX_NAME_FIELD
    decomposed = "e\u0301" * MAX_NAME_LENGTH  # typed as e + accent: one character each, joined
    assert len(clean_name(decomposed)) == MAX_NAME_LENGTH
    assert len(decomposed) <= MAX_NAME_FIELD
