import pytest

from passkeyd.webauthn import OriginPolicy, normalise_origin


@pytest.mark.parametrize(
    ("configured", "origin"),
    [
        ("example.com", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("example.com:8443", "https://example.com:8443"),
        ("android:apk-key-hash:abc_-123", "android:apk-key-hash:abc_-123"),
    ],
)
def test_normalise(configured, origin):
    assert normalise_origin(configured) == origin


def test_matching_is_exact():
    policy = OriginPolicy.build(rp_id="example.com", origins=["example.com"])
    assert policy.accepts("https://example.com")
    for other in (
        "http://example.com",
        "https://example.com:443",
        "https://a.example.com",
        "https://example.com.evil.test",
        "http://localhost:3000",
    ):
        assert not policy.accepts(other)


def test_localhost_over_http_is_allowed_for_a_localhost_rp():
    policy = OriginPolicy.build(rp_id="localhost", origins=["localhost"])
    assert policy.accepts("http://localhost:5173")
    assert policy.accepts("http://localhost")
    assert not policy.accepts("http://127.0.0.1:5173")
    assert not policy.accepts("http://localhost.evil.test")
