"""Pure WebAuthn ceremony verification around py_webauthn: no I/O, no storage, no HTTP."""

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
from .trust import REFUSED_STATUSES, MetadataEntry, StatusReport, TrustStore, verify_trust

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
