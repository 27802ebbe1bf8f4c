import pytest

from passkeyd.webauthn import b64url_decode, b64url_encode


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", bytes(range(256))])
def test_round_trip(data):
    assert b64url_decode(b64url_encode(data)) == data
    assert "=" not in b64url_encode(data)


def test_padding_and_standard_alphabet_are_tolerated():
    assert b64url_decode("-_8=") == b"\xfb\xff"
    assert b64url_decode("+/8") == b"\xfb\xff"


@pytest.mark.parametrize("bad", ["a", "ab!c", "ab c", "é", "abcde"])
def test_other_characters_and_impossible_lengths_are_refused(bad):
    with pytest.raises(ValueError):
        b64url_decode(bad)


def test_non_strings_are_refused():
    with pytest.raises(ValueError):
        b64url_decode(123)  # type: ignore[arg-type]
