import base64
import hashlib

import pytest

from passkeyd.webauthn import OriginPolicy, normalise_origin


@pytest.mark.parametrize(
    ("configured", "origin"),
    [
        ("example.com", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("example.com:8443", "https://example.com:8443"),
        ("android:apk-key-hash:abc_-123", "android:apk-key-hash:abc_-123"),  # not a SHA-256
        ("ios:bundle-id:com.example.App", "ios:bundle-id:com.example.App"),
    ],
)
def test_normalise(configured, origin):
    assert normalise_origin(configured) == origin


DIGEST = hashlib.sha256(b"the app's signing certificate").digest()
FORMS = {  # one certificate fingerprint, written as people write it
    "base64url": base64.urlsafe_b64encode(DIGEST).rstrip(b"=").decode(),
    "base64, padded": base64.b64encode(DIGEST).decode(),
    "base64url, padded": base64.urlsafe_b64encode(DIGEST).decode(),
    "Digital Asset Links hex": ":".join(f"{b:02X}" for b in DIGEST),
}
APK = "android:apk-key-hash:" + FORMS["base64url"]  # as Android sends it


@pytest.mark.parametrize(
    "configured",
    [
        "HTTPS://Example.COM",
        "https://example.com:443",
        "https://example.com/login",
        "https://example.com/",
        "  https://example.com  ",
    ],
)
def test_a_configured_web_origin_matches_what_a_browser_sends(configured):
    """Browsers serialise an origin with a lower-case host, no default port and no path:
    a value written otherwise used to match nothing, silently."""
    assert normalise_origin(configured) == "https://example.com"
    assert OriginPolicy.build(rp_id="example.com", origins=[configured]).accepts(
        "https://example.com"
    )


@pytest.mark.parametrize("form", list(FORMS))
def test_an_android_app_origin_matches_what_android_sends(form):
    configured = "android:apk-key-hash:" + FORMS[form]
    assert normalise_origin(configured) == APK
    assert OriginPolicy.build(rp_id="example.com", origins=[configured]).accepts(APK)


NOT_SHA256 = {  # fingerprints of other lengths, as people write them
    "SHA-1, base64": base64.b64encode(hashlib.sha1(b"cert").digest()).decode(),
    "SHA-1, hex": ":".join(f"{b:02X}" for b in hashlib.sha1(b"cert").digest()),
    "SHA-512, base64": base64.b64encode(hashlib.sha512(b"cert").digest()).decode(),
    "SHA-256 cut short, base64": base64.b64encode(DIGEST[:31]).decode(),
}


@pytest.mark.parametrize("form", list(NOT_SHA256))
def test_an_android_fingerprint_that_is_not_a_sha256_is_kept_as_given(form):
    """Only a SHA-256 (32 bytes) is rewritten as Android sends it: any other fingerprint is
    not one Android sends, and is kept verbatim rather than re-encoded into another."""
    configured = "android:apk-key-hash:" + NOT_SHA256[form]
    assert normalise_origin(configured) == configured
    policy = OriginPolicy.build(rp_id="example.com", origins=[configured])
    assert policy.exact == {configured}


def test_related_origins_are_serialised_origins_and_localhost_only_itself():
    from passkeyd.webauthn import related_origins

    configured = [
        "https://Example.com:443/x",
        "http://localhost:3000",
        "http://localhost.evil.test",
        APK,
    ]
    assert related_origins(configured) == ["https://example.com", "http://localhost:3000"]


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
    # a clientData origin with a final newline is no origin (a `$` anchor took it)
    assert not policy.accepts("http://localhost:5173\n")


def test_listed_localhost_origins_are_the_only_ones_accepted():
    """Any port of http://localhost is a convenience for a service that names none; one
    that names its own means those (another port is another origin, perhaps another app)."""
    policy = OriginPolicy.build(rp_id="localhost", origins=["http://localhost:5173"])
    assert policy.accepts("http://localhost:5173")
    assert not policy.accepts("http://localhost:3000")
    assert not policy.accepts("http://localhost")


def test_a_listed_https_localhost_port_is_the_only_one_accepted():
    """Over https too: a local app at https://localhost:8443 does not let another local
    app's page (http://localhost:3000) use its passkeys, though the RP id is theirs too."""
    policy = OriginPolicy.build(rp_id="localhost", origins=["https://localhost:8443"])
    assert policy.accepts("https://localhost:8443")
    assert not policy.accepts("http://localhost:3000")
    assert not policy.accepts("http://localhost:8443")
    # A bare `localhost` or `localhost:3000`, written without a scheme as Twilio's examples
    # write origins, names no app: any http port stays open, as it did before.
    for bare in ("localhost", "localhost:3000"):
        policy = OriginPolicy.build(rp_id="localhost", origins=[bare])
        assert policy.accepts("http://localhost:3000")


@pytest.mark.parametrize(
    "listed", ["https://localhost", "https://localhost:443", "HTTPS://localhost/"]
)
def test_a_listed_https_localhost_on_its_default_port_is_the_only_one_accepted(listed):
    """An app at https://localhost (a local proxy on 443) is a local app too: another local
    app's page (http://localhost:3000) may not use its passkeys."""
    policy = OriginPolicy.build(rp_id="localhost", origins=[listed])
    assert policy.accepts("https://localhost")
    assert not policy.accepts("http://localhost:3000")


def test_an_ipv6_origin_is_taken_as_browsers_write_it():
    from passkeyd.webauthn.origins import normalise_origin

    assert normalise_origin("http://[0:0:0:0:0:0:0:1]:3000") == "http://[::1]:3000"
    assert normalise_origin("http://[::FFFF:127.0.0.1]:3000") == "http://[::ffff:7f00:1]:3000"
    assert normalise_origin("https://[2001:DB8::1]:443") == "https://[2001:db8::1]"


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        # IPv4-mapped and IPv4-compatible: hex pieces, as browsers write them (Python 3.13's
        # ipaddress writes a mapped address's end as IPv4: `::ffff:127.0.0.1`)
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("::ffff:0:0", "::ffff:0:0"),
        ("::FFFF:10.1.2.3", "::ffff:a01:203"),
        ("::127.0.0.1", "::7f00:1"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        # the first longest run of zeros, and only a run of two or more
        ("0:0:0:0:0:0:0:0", "::"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
        ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ("2001:0DB8:0000:0000:0000:FF00:0042:8329", "2001:db8::ff00:42:8329"),
    ],
)
def test_an_ipv6_origin_host_is_serialised_as_the_url_standard_does(written, sent):
    """A listed IPv6 origin matches what a browser sends (clientDataJSON.origin is compared
    exactly), on every Python: the URL Standard's serializer, never dotted IPv4."""
    from passkeyd.webauthn.origins import normalise_origin

    assert normalise_origin(f"http://[{written}]:3000") == f"http://[{sent}]:3000"
    policy = OriginPolicy.build(rp_id="example.com", origins=[f"https://[{written}]"])
    assert policy.accepts(f"https://[{sent}]")


def test_a_refused_origin_is_named_printable_and_cut() -> None:
    from passkeyd.webauthn.checks import _shown

    assert _shown("https://evil.test") == "'https://evil.test'"
    assert _shown("https://a\n\x00b") == "'https://a??b'"
    assert _shown("x" * 150) == "'" + "x" * 100 + "'..."


@pytest.mark.parametrize("value", ["android:", "myapp:/", "file:/etc", "example.com:"])
def test_a_scheme_without_a_port_is_not_read_as_a_host(value):
    """`host:port` needs digits: `android:` was read as the web origin https://android."""
    from passkeyd.webauthn.origins import normalise_origin, origin_problem

    assert normalise_origin(value) == value
    assert origin_problem(value) is None  # an app origin, taken as written
