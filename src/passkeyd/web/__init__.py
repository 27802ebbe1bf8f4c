"""A demo relying party for passkeyd, and the browser helper (`static/passkeyd.js`).

The demo is a customer's app in miniature: its backend calls passkeyd's Verify API over HTTP
with the account's credentials; its pages run the WebAuthn ceremonies with the helper.
Start it with `passkeyd.web.demo.main(argv)`.
"""

from __future__ import annotations

from .app import create_app
from .config import DemoConfig, parse_config
from .service import DemoService, prepare_service
from .verify import PasskeydUnreachable, VerifyClient, VerifyError

__all__ = [
    "DemoConfig",
    "DemoService",
    "PasskeydUnreachable",
    "VerifyClient",
    "VerifyError",
    "create_app",
    "parse_config",
    "prepare_service",
]
