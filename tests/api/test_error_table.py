"""The one error table covers every domain error: none falls through to the generic 400."""

from __future__ import annotations

import pytest

from passkeyd.api import errors
from passkeyd.domain import errors as e
from passkeyd.webauthn import MalformedResponse, Step, VerificationFailed

# Answered by `classify` itself: the ceremony refusals by their step, the rate limits with
# the code each carries.
SPECIAL = {e.RegistrationRefused, e.AssertionRefused, e.TooManyRequests}


def _all(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all(direct))]


@pytest.mark.parametrize("cls", _all(e.DomainError)[1:], ids=lambda c: c.__name__)
def test_every_domain_error_has_a_row_or_its_own_rule(cls: type) -> None:
    assert cls in SPECIAL or any(base in errors.TABLE for base in cls.__mro__), cls


def test_no_row_is_dead() -> None:
    assert not SPECIAL & set(errors.TABLE)


def test_every_malformed_step_has_its_field_s_code() -> None:
    """A malformed part of the credential is answered with the code of that field."""
    for step, code in errors.MALFORMED.items():
        refused = e.AssertionRefused(MalformedResponse(step, "bad"))
        assert errors.classify(refused)[:2] == (400, code)
    failed = e.AssertionRefused(VerificationFailed(Step.SIGNATURE, "no"))
    assert errors.classify(failed)[:2] == (403, 60324)
