"""Pure WebAuthn ceremony verification around py_webauthn: no I/O, no storage, no HTTP.

The names below are loaded from their modules on first use: the ceremonies' modules load
py_webauthn and its attestation formats (most of passkeyd's import time), which what needs
only `options` or `encoding` (the domain's models, the server's supervisor) does without.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .authentication import VerifiedAssertion, verify_authentication
    from .cose import ALGORITHM_NAMES, SUPPORTED_ALGORITHMS
    from .encoding import b64url_decode, b64url_encode
    from .errors import CeremonyError, MalformedResponse, Step, VerificationFailed
    from .options import DEFAULT_ALGORITHMS, TIMEOUT_MS, creation_options, request_options
    from .origins import OriginPolicy, normalise_origin, related_origins
    from .parsing import (
        AuthenticationResponse,
        ClientData,
        RegistrationResponse,
        parse_authentication,
        parse_registration,
    )
    from .registration import RegisteredCredential, verify_registration
    from .trust import (
        REFUSED_STATUSES,
        MetadataEntry,
        StatusReport,
        TrustStore,
        verify_trust,
    )

_MODULE_OF = {
    "VerifiedAssertion": "authentication",
    "verify_authentication": "authentication",
    "ALGORITHM_NAMES": "cose",
    "SUPPORTED_ALGORITHMS": "cose",
    "b64url_decode": "encoding",
    "b64url_encode": "encoding",
    "CeremonyError": "errors",
    "MalformedResponse": "errors",
    "Step": "errors",
    "VerificationFailed": "errors",
    "creation_options": "options",
    "DEFAULT_ALGORITHMS": "options",
    "request_options": "options",
    "TIMEOUT_MS": "options",
    "normalise_origin": "origins",
    "OriginPolicy": "origins",
    "related_origins": "origins",
    "AuthenticationResponse": "parsing",
    "ClientData": "parsing",
    "parse_authentication": "parsing",
    "parse_registration": "parsing",
    "RegistrationResponse": "parsing",
    "RegisteredCredential": "registration",
    "verify_registration": "registration",
    "MetadataEntry": "trust",
    "REFUSED_STATUSES": "trust",
    "StatusReport": "trust",
    "TrustStore": "trust",
    "verify_trust": "trust",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


__all__ = [
    "ALGORITHM_NAMES",
    "DEFAULT_ALGORITHMS",
    "REFUSED_STATUSES",
    "SUPPORTED_ALGORITHMS",
    "MetadataEntry",
    "StatusReport",
    "TrustStore",
    "related_origins",
    "verify_trust",
    "TIMEOUT_MS",
    "creation_options",
    "request_options",
    "AuthenticationResponse",
    "CeremonyError",
    "ClientData",
    "MalformedResponse",
    "OriginPolicy",
    "RegisteredCredential",
    "RegistrationResponse",
    "Step",
    "VerificationFailed",
    "VerifiedAssertion",
    "b64url_decode",
    "b64url_encode",
    "normalise_origin",
    "parse_authentication",
    "parse_registration",
    "verify_authentication",
    "verify_registration",
]
