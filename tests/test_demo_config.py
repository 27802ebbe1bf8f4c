"""The demo's settings (`passkeyd demo`, `passkeyd conformance`)."""

from __future__ import annotations

import pytest

from passkeyd.web.config import ConfigError, parse_config

CREDENTIALS = {"PASSKEYD_ACCOUNT_SID": "AC" + "0" * 32, "PASSKEYD_AUTH_TOKEN": "t" * 32}


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy:hunter2@127.0.0.1:8080",
        "https://AC00:hunter2@passkeyd.internal",
        "http://proxy:hunter2/x@127.0.0.1:8080",  # the "@" past what urlsplit takes for the host
        "ftp://proxy:hunter2@127.0.0.1",  # not http(s), whose refusal would echo the URL
    ],
)
def test_a_passkeyd_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    """Every demo page's footer shows the passkeyd URL to whoever opens it (security
    review): a password in it was published."""
    with pytest.raises(ConfigError) as refused:
        parse_config(["--passkeyd-url", url], CREDENTIALS)
    assert "credentials" in str(refused.value) and "hunter2" not in str(refused.value)


def test_a_passkeyd_url_without_credentials_is_taken() -> None:
    config = parse_config(["--passkeyd-url", "http://127.0.0.1:8080/"], CREDENTIALS)
    assert config.passkeyd_url == "http://127.0.0.1:8080"
