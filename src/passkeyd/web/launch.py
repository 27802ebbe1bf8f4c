"""Starting a relying party on the Verify API (`passkeyd demo`, `passkeyd conformance`).

It checks (or creates) its Verify service before listening, so a wrong URL or credential
stops it with a sentence and exit code 3: a wrong credential at once, a passkeyd that does
not answer once `--wait` seconds have passed (one started just before, `scripts/serve &`,
takes a second to listen, and a minute on a fresh checkout that sets itself up first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from passkeyd.listen import listen_problem

from .config import ConfigError, DemoConfig
from .service import DemoService, prepare_service
from .verify import PasskeydUnreachable, VerifyClient, VerifyError

EXIT_OK, EXIT_CONFIG = 0, 3

log = logging.getLogger("passkeyd.web")


async def _wait_for(client: VerifyClient, config: DemoConfig, prog: str) -> None:
    """Until passkeyd answers, or `config.wait` seconds have passed (then preparing the
    service says why it cannot)."""
    deadline = time.monotonic() + config.wait
    said = False
    while not await client.answers(timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return
        if not said:
            sys.stderr.write(
                f"{prog}: waiting up to {config.wait:g} s for passkeyd to answer"
                f" at {config.passkeyd_url}\n"
            )
            said = True
        await asyncio.sleep(0.25)


async def _prepare(config: DemoConfig, prog: str, friendly_name: str) -> DemoService:
    async with VerifyClient(config.passkeyd_url, config.account_sid, config.auth_token) as client:
        await _wait_for(client, config, prog)
        return await prepare_service(client, config, friendly_name)


def launch(
    prog: str,
    parse: Callable[[], DemoConfig],
    app_for: Callable[[DemoConfig, DemoService], Any],
    *,
    started: Callable[[DemoConfig, DemoService], None],
    friendly_name: str,
) -> int:
    """Parse the settings, check the port, prepare the service, then serve `app_for` with
    uvicorn until stopped. `started` says what is ready (a log line)."""

    def fail(message: str) -> int:
        sys.stderr.write(f"{prog}: {message}\n")
        return EXIT_CONFIG

    try:
        config = parse()
    except ConfigError as exc:
        return fail(f"configuration error: {exc}")
    logging.basicConfig(
        level=os.environ.get("PASSKEYD_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per request to passkeyd is noise next to uvicorn's access log.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    # Before the service is made: one that cannot listen left one behind at each try.
    if (problem := listen_problem(config.host, config.port)) is not None:
        return fail(f"cannot listen on {config.host}:{config.port} (--host, --port): {problem}")
    try:
        service = asyncio.run(_prepare(config, prog, friendly_name))
    except KeyboardInterrupt:  # while it waited for passkeyd
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except PasskeydUnreachable as exc:
        return fail(f"passkeyd does not answer at {config.passkeyd_url}: {exc}")
    except VerifyError as exc:
        what = f"service {config.service_sid}" if config.service_sid else "a new service"
        why = ""
        if exc.status == 401:  # 20003: no account of this passkeyd has these credentials
            why = (
                f": the credentials match no account or API key of the passkeyd at"
                f" {config.passkeyd_url}; they come from --account-sid and --auth-token, else"
                " PASSKEYD_ACCOUNT_SID and PASSKEYD_AUTH_TOKEN (`serve` keeps an existing"
                " account's token: one rotated since is the one in force)"
            )
        return fail(f"passkeyd refused {what}: {exc.code} {exc.message}{why}")
    if service.created:
        log.info("created Verify service %s (relying party %s)", service.sid, service.rp_id)
    started(config, service)

    import uvicorn  # imported late: parsing options and the checks above do not need it

    uvicorn.run(
        app_for(config, service),
        host=config.host,
        port=config.port,
        log_level=os.environ.get("PASSKEYD_LOG_LEVEL", "info").lower(),
        timeout_graceful_shutdown=5,
    )
    return EXIT_OK
