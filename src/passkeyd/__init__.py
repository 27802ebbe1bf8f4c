"""passkeyd: a self-hosted passkey (WebAuthn) verification service, wire-compatible with
Twilio Verify Passkeys."""

__version__ = "0.1.0"
__all__ = ["__version__"]
