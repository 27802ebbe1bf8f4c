"""`passkeyd demo`: run the demo relying party against a passkeyd API (started as `launch`
says).

    main(["--port", "8081", "--passkeyd-url", "http://127.0.0.1:8080"])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .app import create_app
from .config import DemoConfig, parse_config
from .launch import launch
from .service import DemoService

log = logging.getLogger("passkeyd.web")


def _started(config: DemoConfig, service: DemoService) -> None:
    log.info("demo for service %s: open %s", service.sid, service.page_url)


def main(argv: Sequence[str] | None = None) -> int:
    return launch(
        "passkeyd demo",
        lambda: parse_config(argv, os.environ),
        create_app,
        started=_started,
        friendly_name="passkeyd demo",
    )


if __name__ == "__main__":
    raise SystemExit(main())
