"""Earlier twilio-python releases with the Passkeys classes, as users have them pinned,
against a real passkeyd process (tests/e2e/test_twilio_sdk.py covers the current one
fully). Each release is installed from PyPI on first use, without its dependencies (the
test environment's serve), into `twilio-python-releases/<version>` inside the environment
(`.venv`), and drives `twilio_python/flow.py` in a process of its own.

- 9.8.3, the first with all four Passkeys classes, sends a challenge's request as a form
  field holding its repr: passkeyd used to make it a usernameless challenge, which anyone's
  passkey answers, for a request naming a user. It is refused, saying to upgrade.
- 9.8.3 to 9.10.3 send a credential's keys in snake_case: passkeyd used to refuse every
  VerifyFactor and ApproveChallenge of theirs (400 60380).
- 9.10.4 to 9.11.0 send camelCase, with nested objects the caller wraps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

HERE = Path(__file__).resolve().parent / "twilio_python"


def _installed(version: str) -> Path:
    target = Path(sys.prefix) / "twilio-python-releases" / version
    if not (target / "twilio" / "__init__.py").exists():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--target", str(target), f"twilio=={version}",
            ],
            check=True,
            timeout=300,
        )  # fmt: skip
    return target


@pytest.mark.parametrize("version", ["9.8.3", "9.10.0", "9.10.4"])
def test_a_pinned_release_runs_the_quickstart(version: str, server: Server) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(_installed(version)),  # before the environment's own twilio
    }
    run = subprocess.run(
        [sys.executable, str(HERE / "flow.py"), server.base_url, server.account_sid,
         server.auth_token],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert f"twilio {version}" in run.stdout, report
    assert run.returncode == 0 and "FAIL" not in report, report
    assert run.stdout.count("\nok ") >= 4, report
