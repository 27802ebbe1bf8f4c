"""Helpers of the security tests: fuzz settings, figures, Twilio error-body checks."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings

ERROR_KEYS = {"code", "message", "more_info", "status"}

# Every property: bounded, no per-example deadline (a first call warms up py_webauthn and
# OpenSSL), no example database written into the work tree.
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FIGURES: list[str] = []


def report(line: str) -> None:
    """Print a figure now (pytest -s) and repeat it in the terminal summary."""
    print(f"\n[security] {line}")
    FIGURES.append(line)


def assert_twilio_error(response: Any) -> dict[str, Any]:
    """A 4xx whose body is exactly Twilio's error object, consistent with the status."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    assert isinstance(body, dict) and set(body) - {"details"} == ERROR_KEYS, response.text[:500]
    # `details` only as documented: a 429's wait, an unknown passkey the page may signal
    details = body.get("details", {})
    assert set(details) <= {"retry_after", "signal_unknown_credential"}, response.text[:500]
    assert body["status"] == response.status_code, response.text[:500]
    assert isinstance(body["code"], int) and isinstance(body["message"], str)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}"
    assert "Traceback" not in body["message"]
    return body


def assert_not_server_error(response: Any) -> None:
    """Never a 5xx; every refusal a Twilio error body."""
    assert response.status_code < 500, (
        response.status_code,
        response.request.method,
        str(response.request.url)[:300],
        response.text[:500],
    )
    if response.status_code >= 400:
        assert_twilio_error(response)
