"""The demo's process settings: command-line options, with the account credentials also read
from the environment (PASSKEYD_ACCOUNT_SID / PASSKEYD_AUTH_TOKEN) so they stay out of `ps`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

USER_VERIFICATION = ("required", "preferred", "discouraged")
ATTESTATION = ("none", "indirect", "direct", "enterprise")


class ConfigError(Exception):
    """A setting is missing or cannot work; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DemoConfig:
    host: str
    port: int
    passkeyd_url: str
    account_sid: str
    auth_token: str
    # Use this Verify service; when None the demo creates one at start-up from the fields below.
    service_sid: str | None
    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    user_verification: str
    attestation: str
    users_db: str
    ceremony_timeout: float
    wait: float = 60.0  # seconds to wait at start-up for passkeyd to answer
    # The created service's Passkeys.AttestationPolicy (`passkeyd conformance`'s option).
    attestation_policy: str | None = None
    # The created service's Passkeys.Algorithms (`passkeyd conformance`: every one passkeyd
    # accepts, as the tools' algorithm tests register with each); None: the service default.
    algorithms: tuple[int, ...] | None = None


DEMO = "A demo relying party: sign up and sign in with passkeys through passkeyd."


def parser(
    prog: str = "passkeyd demo", description: str = DEMO, port: int = 8081
) -> argparse.ArgumentParser:
    """The demo's options; another relying party on the same parts (`passkeyd conformance`)
    names itself and its port, and has no pages (no user map, no ceremony timeout)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    pages = description == DEMO
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=f"listen port (default {port})")
    p.add_argument(
        "--passkeyd-url",
        default="http://127.0.0.1:8080",
        help="passkeyd's API base URL (default http://127.0.0.1:8080)",
    )
    p.add_argument("--account-sid", help="account SID or API key SID (PASSKEYD_ACCOUNT_SID)")
    p.add_argument("--auth-token", help="auth token or API key secret (PASSKEYD_AUTH_TOKEN)")
    p.add_argument(
        "--service-sid", help="use this Verify service (VA...) instead of creating one at start-up"
    )
    created = p.add_argument_group("the service created at start-up (without --service-sid)")
    created.add_argument("--rp-id", default="localhost", help="relying party id (localhost)")
    created.add_argument("--rp-name", default=prog, help=f"relying party name ({prog})")
    created.add_argument(
        "--origin",
        action="append",
        dest="origins",
        metavar="ORIGIN",
        help="an allowed origin, repeatable (default http://localhost:PORT for RP id localhost,"
        " else https://RP-ID)",
    )
    created.add_argument(
        "--user-verification",
        choices=USER_VERIFICATION,
        default="preferred",
        help="whether authenticators must verify their user (default preferred)",
    )
    created.add_argument(
        "--attestation",
        choices=ATTESTATION,
        default="none",
        help="the attestation asked of authenticators (default none)",
    )
    if not pages:
        created.add_argument(
            "--attestation-policy",
            choices=("any", "checked", "trusted"),
            help="how attestation is trusted (default checked: a certificate chain must lead"
            " to a root in the FIDO metadata in use; none and self attestation are accepted)",
        )
    if pages:
        p.add_argument(
            "--users-db",
            default=":memory:",
            help="SQLite file for the name -> identity map (default: in memory, lost on restart)",
        )
        p.add_argument(
            "--ceremony-timeout",
            type=float,
            default=120.0,
            help="seconds a page waits for the authenticator before giving up (default 120)",
        )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait at start-up for passkeyd to answer, for one started just"
        " before (default 60; 0: not at all)",
    )
    return p


def _all_algorithms() -> tuple[int, ...]:
    from passkeyd.webauthn.cose import SUPPORTED_ALGORITHMS

    return SUPPORTED_ALGORITHMS


def _default_origins(rp_id: str, port: int) -> tuple[str, ...]:
    if rp_id == "localhost":
        return (f"http://localhost:{port}",)
    return (f"https://{rp_id}",)


def parse_config(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    prog: str = "passkeyd demo",
    description: str = DEMO,
    port: int = 8081,
) -> DemoConfig:
    """Settings from argv and environ. Raises SystemExit(2) on bad usage, ConfigError on a
    setting that is present but cannot work."""
    args = parser(prog, description, port).parse_args(argv)
    args.users_db = getattr(args, "users_db", ":memory:")
    args.ceremony_timeout = getattr(args, "ceremony_timeout", 120.0)
    account_sid = args.account_sid or environ.get("PASSKEYD_ACCOUNT_SID", "")
    auth_token = args.auth_token or environ.get("PASSKEYD_AUTH_TOKEN", "")
    if not account_sid or not auth_token:
        raise ConfigError(
            "the account credentials are missing: pass --account-sid and --auth-token or set"
            " PASSKEYD_ACCOUNT_SID and PASSKEYD_AUTH_TOKEN"
        )
    if "@" in args.passkeyd_url:
        # Every page's footer shows the URL, and the start-up messages name it: credentials
        # in it would be shown to whoever opens the demo. (Not the URL: it may hold them.)
        # Anywhere in it, first: with a "/", "?" or "#" in the password, its "@" is past
        # what urlsplit takes for the host, and the scheme's refusal below echoes the URL.
        raise ConfigError(
            "--passkeyd-url must not carry credentials (user:password@): pass the account's"
            " with --account-sid and --auth-token, or PASSKEYD_ACCOUNT_SID and"
            " PASSKEYD_AUTH_TOKEN"
        )
    url = urlsplit(args.passkeyd_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(f"--passkeyd-url must be an http(s) URL, not {args.passkeyd_url!r}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, not {args.port}")
    if not 0 <= args.wait < math.inf:  # (nan is neither)
        raise ConfigError("--wait must be a number of seconds, 0 or more")
    if args.ceremony_timeout <= 0:
        raise ConfigError("--ceremony-timeout must be positive")
    return DemoConfig(
        host=args.host,
        port=args.port,
        passkeyd_url=args.passkeyd_url.rstrip("/"),
        account_sid=account_sid,
        auth_token=auth_token,
        service_sid=args.service_sid,
        rp_id=args.rp_id,
        rp_name=args.rp_name,
        origins=tuple(args.origins or _default_origins(args.rp_id, args.port)),
        user_verification=args.user_verification,
        attestation=args.attestation,
        users_db=args.users_db,
        ceremony_timeout=args.ceremony_timeout,
        wait=args.wait,
        attestation_policy=getattr(args, "attestation_policy", None),
        algorithms=None if description == DEMO else _all_algorithms(),
    )
